/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Default settings of a served device, the starting point that the config
 * file and the command line then override.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/device.h"

void fs_device_spec_defaults(struct fs_device_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	/* Heap-owned like every spec string, so that renaming can free it. */
	spec->name = strdup("disk");
	spec->backing = NULL;
	spec->block_size = 4096;
	spec->engine = BUFIO_ENGINE_AUTO;
	spec->direct = -1;
	spec->readonly = false;
	spec->cache_mode = FS_CACHE_WRITEBACK;
	spec->writeback_ratio = 3;
	spec->dirty_expire_seconds = 30;
	spec->read_ahead_kb = 4096;
	spec->max_write_failures = 5;
}

void fs_device_spec_free(struct fs_device_spec *spec)
{
	free(spec->name);
	free(spec->backing);
	spec->name = NULL;
	spec->backing = NULL;
}
