/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The daemon's device functions the control registry refers to; the
 * harnesses only parse, so these are never called.
 */
#include <stdlib.h>

#include "daemon/device.h"

int fs_device_set_cache_mode(struct fs_device *dev, unsigned mode)
{
	abort(); /* parsing must not apply anything */
}

int fs_device_flush(struct fs_device *dev)
{
	abort();
}
