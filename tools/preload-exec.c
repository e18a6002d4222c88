/*
 * make check-asan: runs the uninstrumented lua5.4 with the ASan runtime
 * loaded first, so that the instrumented conntrack/core.so it loads works.
 * Built as build/asan/bin/lua5.4, first in PATH. The dynamic loader is
 * called directly with --preload instead of setting LD_PRELOAD, which every
 * program the tests start (sh, conntrack, nft, ...) would inherit; --argv0
 * keeps argv[0] as the caller wrote it, as if lua5.4 had been run.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LDSO
#error "build with -DLDSO=\"/path/to/ld.so\" -DRUNTIME=\"libasan.so...\" -DTARGET=\"/usr/bin/lua5.4\""
#endif

int main(int argc, char **argv)
{
	char **args = calloc((size_t)argc + 7, sizeof(*args));
	int n = 0;

	if (!args)
		return 127;
	args[n++] = (char *)LDSO;
	args[n++] = (char *)"--preload";
	args[n++] = (char *)RUNTIME;
	args[n++] = (char *)"--argv0";
	args[n++] = argv[0];
	args[n++] = (char *)TARGET;
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execv(LDSO, args);
	perror(LDSO);
	return 127;
}
