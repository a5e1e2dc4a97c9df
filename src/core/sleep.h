/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reporting a thread's waits to its pool (bufio_set_sleep_hooks), for the
 * core's and the backends' waits alike.
 */
#ifndef BUFIO_CORE_SLEEP_H
#define BUFIO_CORE_SLEEP_H

/*
 * Around a wait that may last for I/O: sleep_begin() before it, sleep_end()
 * after, in the same thread. Nested pairs report once (the outermost). A
 * thread without hooks pays a thread-local load.
 */
void sleep_begin(void);
void sleep_end(void);

#endif
