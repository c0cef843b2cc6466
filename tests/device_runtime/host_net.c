/* A stub datagram transport for the device runtime's tests: each net_send() appends one record
 * (u16 little-endian length, then the datagram) to the file named by $DEVRT_NET_OUT.
 * $DEVRT_NET_INIT_ERROR=e makes net_init() fail with e; $DEVRT_NET_FAIL_TYPE=t makes net_send() fail
 * with error 5 for frames whose type byte (offset 3) is t. */
#include <stdio.h>
#include <stdlib.h>

#include "net.h"

static uint32_t sent;
static uint32_t errors;

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? atoi(v) : fallback;
}

int net_init(void)
{
    return env_int("DEVRT_NET_INIT_ERROR", 0);
}

int net_send(const uint8_t *data, size_t len)
{
    const char *path = getenv("DEVRT_NET_OUT");
    FILE *f;
    uint8_t head[2];
    if (len >= 4u && (int)data[3] == env_int("DEVRT_NET_FAIL_TYPE", -1)) {
        errors++;
        return 5;
    }
    f = path != NULL ? fopen(path, "ab") : NULL;
    if (f == NULL) {
        errors++;
        return 9;
    }
    head[0] = (uint8_t)(len & 0xFFu);
    head[1] = (uint8_t)(len >> 8);
    (void)fwrite(head, 1, 2, f);
    (void)fwrite(data, 1, len, f);
    (void)fclose(f);
    sent++;
    return 0;
}

uint32_t net_sent(void)
{
    return sent;
}

uint32_t net_errors(void)
{
    return errors;
}
