"""
Several daemons behind one name, joined through NATS (C{--cluster}).

Nothing here is imported unless C{--cluster} is given: a single node starts
without nats-py or asyncio.

  - L{streamd.config.ClusterConfig}: what C{--cluster*} options say.
  - L{streamd.cluster.wire}: streamd frames in NATS messages, and messages
    larger than NATS's C{max_payload} in parts.
  - L{streamd.cluster.loop}: nats-py's asyncio loop in a thread of its own.
  - L{streamd.cluster.link}: the service that sends this node's messages to
    NATS and publishes the other nodes' messages here.
"""
