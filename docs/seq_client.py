"""The seq protocol's reference client (docs/protocol-seq.rst), stdlib only:
prints every message once, in order, resuming after each reconnect.
Usage: python seq_client.py HOST PORT [TOKEN]"""
import io, random, socket, struct, sys, time  # noqa: E401

def frames(stream):  # int32 frames, of any size: the connection's, and the messages in a BATCH
    while len(header := stream.read(4)) == 4:
        if len(payload := stream.read(length := struct.unpack(">I", header)[0])) < length:
            return
        yield payload


def session(host, port, state, out, token=None):
    """One connection; state = {"epoch": bytes or None, "last": int} carries over."""
    with socket.create_connection((host, port)) as sock:
        send = lambda payload: sock.sendall(struct.pack(">I", len(payload)) + payload)  # noqa: E731
        if token:
            send(b"\x08" + token)  # AUTH
        start = 1 if state["epoch"] is not None else 0  # RESUME, or NEWEST
        send(struct.pack(">BBB8sQ", 1, 3, start, state["epoch"] or bytes(8), state["last"]))  # HELLO v3
        for frame in frames(sock.makefile("rb")):
            kind = frame[0]
            if kind == 1 and frame[2:10] != state["epoch"]:  # HELLO of a new epoch: old numbers mean nothing
                state.update(epoch=frame[2:10], last=0)
            elif kind in (2, 9):  # MSG: u64 seq, message; BATCH: u64 first, int32 frames
                messages = [frame[9:]] if kind == 2 else frames(io.BytesIO(frame[9:]))
                for seq, payload in enumerate(messages, struct.unpack_from(">Q", frame, 1)[0]):
                    if seq > state["last"]:  # once each, in order, across connections
                        state["last"] = seq
                        out(seq, payload)
            elif kind == 3:  # GAP
                first, last, why = struct.unpack_from(">QQH", frame, 1)
                print(f"missed {last - first + 1} messages (seq {first}-{last}): reason {why}", file=sys.stderr)
                state["last"] = max(state["last"], last)
            elif kind == 4:  # PING
                send(b"\x07")  # PONG
            elif kind == 5:  # BYE; after some codes, connecting again would be refused again
                code = struct.unpack_from(">H", frame, 1)[0]
                print(f"server said bye: {frame[3:].decode('utf-8', 'replace')} ({code})", file=sys.stderr)
                if code in (4, 5, 6, 7, 8, 14, 16):
                    raise SystemExit(1)
            # Any other type is from a newer version: ignored.


def main(host, port, token=None):
    state, delay = {"epoch": None, "last": 0}, 0.5
    while True:
        try:
            session(host, port, state, lambda seq, payload: print(seq, payload.decode("utf-8", "replace")), token)
            delay = 0.5
        except OSError as e:
            print(f"connection: {e}", file=sys.stderr)
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 30)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3].encode() if len(sys.argv) > 3 else None)
