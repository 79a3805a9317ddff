"""Redis Streams: client, emitter (XADD), consumer (consumer group, ack after commit), status."""
