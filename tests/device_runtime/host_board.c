/* A host "board" for the device runtime's tests (tests/test_device_runtime.py): stdin is the UART's
 * receive line, stdout its transmit line, exit() is board_exit, and a stub counter. The board.h it
 * implements is rendered from firmware_templates/common/board.h.j2 by the test. Built with TS_AUTH
 * (tests/test_device_runtime_auth.py), its boot nonce comes from $DEVRT_BOOT_NONCE: one number, or a
 * comma-separated list that successive draws take in turn (the last one repeats; unset: 0). */
#include <stdio.h>
#include <stdlib.h>

#include "board.h"

/* Exit status when stdin ends before a CONTROL exit: a test that meant to exit sees it. */
#define HOST_EOF_STATUS 99

void board_uart_init(void)
{
}

void board_uart_putc(uint8_t c)
{
    (void)putchar(c);
}

uint8_t board_uart_getc(void)
{
    int c = getchar();
    if (c == EOF) {
        exit(HOST_EOF_STATUS); /* flushes stdout */
    }
    return (uint8_t)c;
}

void board_uart_write(const void *buf, size_t n)
{
    (void)fwrite(buf, 1, n, stdout);
}

void board_exit(int code)
{
    exit(code);
}

/* The stub counter: counter_instructions() is 1000 + the number of counter_start() calls. */
static uint32_t starts;

void counter_start(void)
{
    starts++;
}

uint32_t counter_instructions(void)
{
    return 1000u + starts;
}

#ifdef TS_AUTH
uint32_t board_boot_nonce(void)
{
    static const char *next;
    static unsigned long last;
    char *end;
    if (next == NULL) {
        next = getenv("DEVRT_BOOT_NONCE");
        if (next == NULL) {
            next = "0";
        }
    }
    if (*next != '\0') {
        last = strtoul(next, &end, 0);
        next = *end == ',' ? end + 1 : end;
    }
    return (uint32_t)last;
}
#endif
