/*
** Lua files compiled into the ct-lua binary, as bytecode.
** The definitions are generated at build time by tools/embed.lua from lua/ and scripts/.
*/
#ifndef CT_EMBEDDED_H
#define CT_EMBEDDED_H

#include <stddef.h>

struct ct_embedded {
  const char *name;       /* module name ("conntrack.util") or script name ("summary") */
  const char *chunkname;  /* "@" .. repository path, so tracebacks name the repository file */
  const char *chunk;      /* the file precompiled (string.dump), then a NUL */
  size_t size;            /* number of bytes in chunk, the NUL excluded */
};

/* Modules from lua/, for package.preload; the last entry has name == NULL. */
extern const struct ct_embedded ct_embedded_modules[];

/* Bundled scripts from scripts/, run as `ct-lua NAME`; the last entry has name == NULL. */
extern const struct ct_embedded ct_embedded_scripts[];

#endif
