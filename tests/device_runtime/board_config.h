/* The host "board" of tests/test_device_runtime.py (stands in for the generated board_config.h). */
#ifndef TS_BOARD_CONFIG_H
#define TS_BOARD_CONFIG_H

#define BOARD_NAME "host"
#define BOARD_CLOCK_HZ 1000000u
#define BOARD_UART_BASE 0u
#define BOARD_HAS_FPU 0
#define BOARD_STACK_BYTES 4096u
#define BOARD_ICOUNT_SHIFT 0u
#define BOARD_EXIT_FAULT 120

#endif /* TS_BOARD_CONFIG_H */
