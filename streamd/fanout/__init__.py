"""
The fan-out core: one history of everything published (L{history}), a
subscriber's place in it (L{cursor}, and L{socketcursor} for TCP and UNIX
sockets), the hub that appends and hands out (L{hub}), and where a
subscriber's stream starts (L{resume}).
"""
