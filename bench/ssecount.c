/*
 * The SSE subscribers of `python -m bench -p sse-c`: N connections to
 * streamd's /events, each counting the messages it receives, in C, so that
 * the subscribers are not what limits the run (the Python ones used both
 * cores while the server had a third of one).
 *
 *     ssecount PORT COUNTS_FILE CONNECTIONS
 *
 * Each connection sends the GET that EventSource sends, checks the answer's
 * status line, then de-chunks the chunked body and splits it into events at
 * blank lines: an event whose first line starts with "id: " is a message and
 * adds one to its slot of COUNTS_FILE (an array of native 64-bit integers,
 * one per connection, which the bench maps and reads while this runs);
 * "event: bye" is an error.  It prints "ready" once every connection has
 * its answer's head, and stops when the bench closes its standard input.
 * Any error is one line on stderr and exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)

static const char REQUEST[] =
    "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";

struct connection {
    int fd;
    int slot;
    int inHead;          /* still reading the response's head */
    char head[4096];
    size_t headLength;
    int inSize;          /* reading a chunk's size line */
    char sizeLine[32];
    size_t sizeLength;
    size_t chunkLeft;    /* bytes of the chunk's data still to come */
    size_t trailerLeft;  /* bytes of the CRLF after a chunk's data */
    int newline;         /* whether the last byte of the events was a newline */
    char start[10];      /* the first bytes of the event begun */
    size_t startLength;
};

static void fail(const char *what, int slot) {
    fprintf(stderr, "ssecount: subscriber %d: %s\n", slot, what);
    exit(1);
}

/* The event begun has ended: count it if it is a message. */
static void endEvent(struct connection *c, volatile int64_t *counts) {
    if (c->startLength >= 4 && memcmp(c->start, "id: ", 4) == 0) {
        counts[c->slot] += 1;
    } else if (c->startLength >= 10 && memcmp(c->start, "event: bye", 10) == 0) {
        fail("the server said bye", c->slot);
    }
    c->startLength = 0;
    c->newline = 0;
}

/* One byte of the events: a second newline in a row ends the event. */
static void byte(struct connection *c, char ch, volatile int64_t *counts) {
    if (ch != '\n')
        c->newline = 0;
    else if (c->newline)
        endEvent(c, counts);
    else
        c->newline = 1;
}

/*
 * Events' bytes, de-chunked: an event's first bytes one at a time (kept, to
 * tell what it is), the rest from newline to newline.
 */
static void events(struct connection *c, const char *data, size_t length, volatile int64_t *counts) {
    const char *end = data + length;
    while (data < end) {
        if (c->startLength < sizeof c->start) {
            char ch = *data++;
            c->start[c->startLength++] = ch;
            byte(c, ch, counts);
            continue;
        }
        const char *newline = memchr(data, '\n', (size_t)(end - data));
        if (newline == NULL) {
            c->newline = 0;
            return;
        }
        if (newline != data)
            c->newline = 0;
        data = newline + 1;
        byte(c, '\n', counts);
    }
}

/* Bytes of the chunked body. */
static void body(struct connection *c, const char *data, size_t length, volatile int64_t *counts) {
    const char *end = data + length;
    while (data < end) {
        if (c->trailerLeft) {
            size_t take = c->trailerLeft < (size_t)(end - data) ? c->trailerLeft : (size_t)(end - data);
            c->trailerLeft -= take;
            data += take;
            if (!c->trailerLeft)
                c->inSize = 1;
        } else if (c->inSize) {
            char ch = *data++;
            if (ch == '\n') {
                c->sizeLine[c->sizeLength] = 0;
                char *stop;
                unsigned long size = strtoul(c->sizeLine, &stop, 16);
                if (stop == c->sizeLine)
                    fail("a chunk without a size", c->slot);
                if (size == 0)
                    fail("the server ended the stream", c->slot);
                c->chunkLeft = size;
                c->inSize = 0;
                c->sizeLength = 0;
            } else if (ch != '\r') {
                if (c->sizeLength + 1 >= sizeof c->sizeLine)
                    fail("a chunk size line too long", c->slot);
                c->sizeLine[c->sizeLength++] = ch;
            }
        } else {
            size_t take = c->chunkLeft < (size_t)(end - data) ? c->chunkLeft : (size_t)(end - data);
            events(c, data, take, counts);
            c->chunkLeft -= take;
            data += take;
            if (!c->chunkLeft)
                c->trailerLeft = 2;
        }
    }
}

static void received(struct connection *c, const char *data, size_t length, volatile int64_t *counts) {
    if (c->inHead) {
        size_t take = sizeof c->head - 1 - c->headLength;
        if (take > length)
            take = length;
        memcpy(c->head + c->headLength, data, take);
        c->headLength += take;
        c->head[c->headLength] = 0;
        char *blank = strstr(c->head, "\r\n\r\n");
        if (blank == NULL) {
            if (c->headLength == sizeof c->head - 1)
                fail("a response head over 4 KiB", c->slot);
            return;
        }
        if (strncmp(c->head, "HTTP/1.1 200 ", 13) != 0)
            fail("/events did not answer 200", c->slot);
        if (strstr(c->head, "chunked") == NULL)
            fail("/events did not answer with a chunked stream", c->slot);
        size_t used = (size_t)(blank + 4 - c->head) - (c->headLength - take);
        c->inHead = 0;
        c->inSize = 1;
        body(c, data + used, length - used, counts);
        return;
    }
    body(c, data, length, counts);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: ssecount PORT COUNTS_FILE CONNECTIONS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int n = atoi(argv[3]);
    int file = open(argv[2], O_RDWR);
    if (file < 0) {
        perror("ssecount: the counts file");
        return 1;
    }
    volatile int64_t *counts = mmap(NULL, (size_t)n * sizeof(int64_t), PROT_READ | PROT_WRITE,
                                    MAP_SHARED, file, 0);
    if (counts == MAP_FAILED) {
        perror("ssecount: mapping the counts file");
        return 1;
    }
    int poller = epoll_create1(0);
    struct connection *connections = calloc((size_t)n, sizeof *connections);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < n; i++) {
        struct connection *c = &connections[i];
        c->slot = i;
        c->inHead = 1;
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&address, sizeof address) < 0)
            fail(strerror(errno), c->slot);
        if (write(c->fd, REQUEST, sizeof REQUEST - 1) != (ssize_t)(sizeof REQUEST - 1))
            fail("could not send its request", c->slot);
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(poller, EPOLL_CTL_ADD, c->fd, &event);
    }
    struct epoll_event stdinEvent = {.events = EPOLLIN | EPOLLHUP, .data.ptr = NULL};
    epoll_ctl(poller, EPOLL_CTL_ADD, 0, &stdinEvent);
    int heads = n;
    char *buffer = malloc(READ_SIZE);
    struct epoll_event ready[64];
    for (;;) {
        int count = epoll_wait(poller, ready, 64, -1);
        if (count < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < count; i++) {
            struct connection *c = ready[i].data.ptr;
            if (c == NULL)
                return 0; /* the bench closed our standard input: done */
            ssize_t got = read(c->fd, buffer, READ_SIZE);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0)
                fail("the server closed the connection", c->slot);
            int inHead = c->inHead;
            received(c, buffer, (size_t)got, counts);
            if (inHead && !c->inHead && --heads == 0) {
                printf("ready\n");
                fflush(stdout);
            }
        }
    }
}
