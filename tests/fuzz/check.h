/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * CHECK(cond) for the fuzz harnesses: a broken contract aborts, which
 * libFuzzer reports like a crash and keeps the input that did it.
 */
#ifndef BUFIOFS_FUZZ_CHECK_H
#define BUFIOFS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
