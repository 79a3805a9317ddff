"""Reading TensorBoard event files incrementally, from a byte offset.

An event file is a sequence of TFRecords: ``uint64 length``, ``uint32 masked CRC-32C of the
length``, ``length`` bytes (a serialized ``Event`` protobuf), ``uint32 masked CRC-32C of the
data``. :func:`read_records` returns the complete records after an offset and the offset just
past the last one, so the next poll starts there: a file is never read twice, and a last
record still being written (fewer bytes on disk than its header announces) is left for the
next poll. The length's checksum is verified (a wrong one means the file is damaged from there:
reading it stops); the data's is not (pure-Python CRC over every record would cost more than
parsing it; a damaged record fails to parse and is counted).

:func:`values` turns one event into what the adapter keeps: scalars (legacy ``simple_value`` and
the scalars plugin's tensors), text summaries, HParams session data, and the names of other
summaries (histograms, images...).
"""

from __future__ import annotations

import struct

#: most bytes read from one file in one go (a file grown by more is read in several chunks)
CHUNK = 16 << 20


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class DamagedFile(Exception):
    """A record header's checksum does not match: the file is damaged at ``offset``."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"damaged record header at byte {offset}")
        self.offset = offset


def read_records(path: str, offset: int, size: int) -> tuple[list[bytes], int]:
    """The complete records between ``offset`` and ``size``, and the offset after the last one.

    A truncated last record (header or data not all on disk yet) is not returned; the returned
    offset points at its start. Raises :class:`DamagedFile` (with the records before it in
    ``exc.records``, and their end in ``exc.offset``) on a bad header checksum.
    """
    out: list[bytes] = []
    with open(path, "rb") as fh:
        while offset < size:
            fh.seek(offset)
            buf = fh.read(min(CHUNK, size - offset))
            pos = 0
            n = len(buf)
            while n - pos >= 12:
                header = buf[pos:pos + 8]
                (length,) = struct.unpack("<Q", header)
                (crc,) = struct.unpack_from("<I", buf, pos + 8)
                if masked_crc32c(header) != crc:
                    exc = DamagedFile(offset + pos)
                    exc.records = out  # type: ignore[attr-defined]
                    raise exc
                end = pos + 12 + length + 4
                if end > n:
                    break
                out.append(buf[pos + 12:pos + 12 + length])
                pos = end
            if pos == 0:
                if n - pos >= 12 and offset + 12 + length + 4 <= size:  # one record bigger than a chunk
                    fh.seek(offset + 12)
                    out.append(fh.read(length))
                    offset += 12 + length + 4
                    continue
                break  # the last record is still being written
            offset += pos
    return out, offset


# -- events -> values ---------------------------------------------------------------------

_HPARAM_STATUS = {0: "UNKNOWN", 1: "SUCCESS", 2: "FAILURE", 3: "RUNNING"}


def _protos():
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    return event_pb2, plugin_data_pb2


def parse_event(payload: bytes):
    return _protos()[0].Event.FromString(payload)


def _scalar(tensor) -> float:
    if tensor.float_val:
        return float(tensor.float_val[0])
    if tensor.double_val:
        return float(tensor.double_val[0])
    if tensor.int_val:
        return int(tensor.int_val[0])
    if tensor.int64_val:
        return int(tensor.int64_val[0])
    from tensorboard.util import tensor_util  # tensor_content, half precision...

    return tensor_util.make_ndarray(tensor).item()


def _text(tensor) -> str:
    parts = [s.decode("utf-8", errors="replace") for s in tensor.string_val]
    if not parts and tensor.tensor_content:
        from tensorboard.util import tensor_util

        parts = [s.decode("utf-8", errors="replace") if isinstance(s, bytes) else str(s)
                 for s in tensor_util.make_ndarray(tensor).ravel().tolist()]
    return "\n".join(parts)


def _hparam_value(v):
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def values(event, plugins: dict) -> list[tuple]:
    """What one event holds, as ``(kind, tag, value)``: kind "scalar", "text", "hparams_start"
    (value: ``{"hparams", "group", "start_time"}``), "hparams_end" (``{"status", "end_time"}``),
    "hparams_experiment" (``{"metrics", "hparams"}``) or "other" (value: the plugin or summary kind).

    ``plugins`` maps a tag to its plugin name: filled from the first event of a tag that carries
    summary metadata (writers may send it only once), read for the later ones.
    """
    out: list[tuple] = []
    if event.WhichOneof("what") != "summary":
        return out
    for v in event.summary.value:
        tag = v.tag
        plugin = v.metadata.plugin_data.plugin_name if v.HasField("metadata") else ""
        if plugin:
            plugins[tag] = plugin
        else:
            plugin = plugins.get(tag, "")
        kind = v.WhichOneof("value")
        if kind == "simple_value":
            out.append(("scalar", tag, float(v.simple_value)))
        elif kind == "tensor" and plugin == "scalars":
            out.append(("scalar", tag, _scalar(v.tensor)))
        elif kind == "tensor" and plugin == "text":
            out.append(("text", tag, _text(v.tensor)))
        elif plugin == "hparams" and v.HasField("metadata"):
            out.extend(_hparams(tag, v.metadata.plugin_data.content))
        else:
            out.append(("other", tag, plugin or kind or "unknown"))
    return out


def _hparams(tag: str, content: bytes) -> list[tuple]:
    data = _protos()[1].HParamsPluginData.FromString(content)
    which = data.WhichOneof("data")
    if which == "session_start_info":
        s = data.session_start_info
        return [("hparams_start", tag, {"hparams": {k: _hparam_value(v) for k, v in s.hparams.items()},
                                        "group": s.group_name or None, "start_time": s.start_time_secs or None})]
    if which == "session_end_info":
        e = data.session_end_info
        return [("hparams_end", tag, {"status": _HPARAM_STATUS.get(e.status, "UNKNOWN"),
                                      "end_time": e.end_time_secs or None})]
    if which == "experiment":
        x = data.experiment
        return [("hparams_experiment", tag, {"metrics": [m.name.tag for m in x.metric_infos],
                                             "hparams": [h.name for h in x.hparam_infos]})]
    return []
