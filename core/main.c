/*
** ct-lua: the Lua 5.4 stand-alone interpreter with conntrack built in.
**
** Shaped like Lua's own lua.c so that it behaves like lua5.4 (options, LUA_INIT, 'arg',
** tracebacks, exit status, REPL). On top of that:
**   - conntrack.core and every module of lua/ are in package.preload (compiled on require);
**   - `ct-lua NAME args` runs the bundled script NAME from scripts/;
**   - invoked as `ct-NAME` or `NAME` (a symlink), ct-lua runs bundled script NAME directly.
*/

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "embedded.h"
#include "module.h"

#ifndef CT_LUA_VERSION  /* the build may pass the release with -DCT_LUA_VERSION=... */
#define CT_LUA_VERSION "0.1"
#endif

#define PROGNAME "ct-lua"
#define PROMPT1 "> "
#define PROMPT2 ">> "
#define INIT_VAR "LUA_INIT"
#define INIT_VAR_VERSIONED INIT_VAR LUA_VERSUFFIX

/*
** The SIGINT handler is the only code that cannot receive the state as an argument, and it
** must reach the running state to stop it; this is the one global the interpreter needs.
*/
static lua_State *globalL = NULL;


static void setsignal (int sig, void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* Hook installed by the signal handler: raise the error from inside the Lua VM. */
static void lstop (lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/*
** A signal handler may not touch the Lua state beyond setting a hook (Lua allows exactly
** that asynchronously), so it only arranges for lstop to run at the next VM event. A second
** SIGINT kills the process, in case the running code never reaches such an event.
*/
static void laction (int sig) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(sig, SIG_DFL);
  lua_sethook(globalL, lstop, mask, 1);
}


static void print_usage (const char *badoption) {
  const struct ct_embedded *s;
  fprintf(stderr, "%s: ", PROGNAME);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n"
    "Bundled scripts (run as '%s NAME [args]'):",
    PROGNAME, PROGNAME);
  for (s = ct_embedded_scripts; s->name != NULL; s++)
    fprintf(stderr, " %s", s->name);
  fputc('\n', stderr);
}

/* Prints an error message, prefixed with the program name when there is one. */
static void l_message (const char *pname, const char *msg) {
  if (pname != NULL) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
}

/*
** Prints and pops the error message on top of the stack if 'status' is an error. The
** message is a string: Lua made it, or msghandler turned the error object into one.
*/
static int report_as (lua_State *L, int status, const char *pname) {
  if (status != LUA_OK) {
    l_message(pname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

static int report (lua_State *L, int status) {
  return report_as(L, status, PROGNAME);
}

/* Message handler for every chunk we run: error message plus traceback. */
static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;  /* an error object that describes itself: no traceback, as lua.c */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below 'narg' arguments with msghandler and the SIGINT hook armed. */
static int docall (lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  setsignal(SIGINT, laction);
  status = lua_pcall(L, narg, nres, base);
  setsignal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return status;
}

static void print_version (void) {
  printf("%s %s (%s)\n", PROGNAME, CT_LUA_VERSION, LUA_COPYRIGHT);
  fflush(stdout);
}


/* Loads an embedded chunk: bytecode that tools/embed.lua compiled from the file. */
static int load_embedded (lua_State *L, const struct ct_embedded *e) {
  return luaL_loadbufferx(L, e->chunk, e->size, e->chunkname, "b");
}

/*
** package.preload loader for an embedded module; upvalue 1 is its index in
** ct_embedded_modules. The chunk receives the loader's arguments (module name and
** require's extra value), exactly as a module file receives them from its searcher.
*/
static int embedded_loader (lua_State *L) {
  const struct ct_embedded *e =
    &ct_embedded_modules[lua_tointeger(L, lua_upvalueindex(1))];
  int nargs = lua_gettop(L);
  if (load_embedded(L, e) != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      e->name, e->chunkname + 1, lua_tostring(L, -1));
  lua_insert(L, 1);
  lua_call(L, nargs, 1);
  return 1;
}

/* Registers conntrack.core and the embedded modules; nothing is compiled here. */
static void preload_modules (lua_State *L) {
  lua_Integer i;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_conntrack_core);
  lua_setfield(L, -2, "conntrack.core");
  for (i = 0; ct_embedded_modules[i].name != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, ct_embedded_modules[i].name);
  }
  lua_pop(L, 1);
}

static const struct ct_embedded *find_script (const char *name) {
  const struct ct_embedded *s;
  for (s = ct_embedded_scripts; s->name != NULL; s++)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

/* Busybox style: `ct-NAME` or `NAME` (basename of argv[0]) selects bundled script NAME. */
static const struct ct_embedded *applet_script (const char *argv0) {
  const char *base;
  const struct ct_embedded *s;
  if (argv0 == NULL) return NULL;
  base = strrchr(argv0, '/');
  base = base ? base + 1 : argv0;
  s = find_script(base);
  if (s == NULL && strncmp(base, "ct-", 3) == 0)
    s = find_script(base + 3);
  return s;
}

/*
** Bundled scripts are tools that run as root in arbitrary directories: keep only absolute
** templates in package.<field>, so "./?.lua", "?.so" and the like can never pick up a
** module planted in the working directory.
*/
static void drop_relative_paths (lua_State *L, const char *field) {
  int top = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE &&
      lua_getfield(L, -1, field) == LUA_TSTRING) {
    const char *p = lua_tostring(L, -1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (*p != '\0') {
      size_t len = strcspn(p, LUA_PATH_SEP);
      if (p[0] == '/') {
        if (luaL_bufflen(&b) > 0) luaL_addstring(&b, LUA_PATH_SEP);
        luaL_addlstring(&b, p, len);
      }
      p += len;
      if (*p != '\0') p++;
    }
    luaL_pushresult(&b);
    lua_setfield(L, -3, field);
  }
  lua_settop(L, top);
}

/*
** Creates the global 'arg': argv[script] at index 0, the script's arguments at positive
** indices and everything before it (interpreter and options) at negative ones. Without a
** script, 'script' is 0 and the interpreter name is at index 0.
*/
static void createargtable (lua_State *L, char **argv, int argc, int script) {
  int i;
  lua_createtable(L, argc > script ? argc - script - 1 : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk (lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dofile (lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring (lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod: mod = require("mod");  -l g=mod: g = require("mod"). */
static int dolibrary (lua_State *L, const char *spec) {
  int status;
  const char *eq = strchr(spec, '=');
  const char *globname = lua_pushlstring(L, spec, eq ? (size_t)(eq - spec) : strlen(spec));
  lua_getglobal(L, "require");
  lua_pushstring(L, eq ? eq + 1 : spec);
  status = docall(L, 1, 1);
  if (status == LUA_OK)
    lua_setglobal(L, globname);
  report(L, status);
  lua_pop(L, 1);  /* globname */
  return status;
}

/* Pushes arg[1..#arg] as the script's arguments (the table may have been changed). */
static int pushargs (lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* Calls a loaded script with its arguments; its results are not used. */
static int runchunk (lua_State *L, int status) {
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, 0);
  }
  return report(L, status);
}

/* A script file; "-" is stdin unless it came after "--". */
static int handle_script (lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  return runchunk(L, luaL_loadfile(L, fname));
}

static int handle_bundled (lua_State *L, const struct ct_embedded *script) {
  drop_relative_paths(L, "path");
  drop_relative_paths(L, "cpath");
  return runchunk(L, load_embedded(L, script));
}


/* ---------------------------------------------------------------- REPL */

/* Pushes the prompt: _PROMPT/_PROMPT2 through tostring, or the default. */
static const char *push_prompt (lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return lua_pushstring(L, firstline ? PROMPT1 : PROMPT2);
  }
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

/*
** Shows the prompt and pushes the next line of stdin without its newline; returns 0 at end
** of input. fgets is repeated until the newline, so lines have no length limit. The first
** line of a statement may be "=expr", the 5.2 spelling of "return expr".
*/
static int pushline (lua_State *L, int firstline) {
  luaL_Buffer b;
  int got = 0;
  fputs(push_prompt(L, firstline), stdout);
  fflush(stdout);
  lua_pop(L, 1);
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    size_t l;
    if (fgets(p, LUAL_BUFFERSIZE, stdin) == NULL) break;
    got = 1;
    l = strlen(p);
    luaL_addsize(&b, l);
    if (l > 0 && p[l - 1] == '\n') {
      luaL_buffsub(&b, 1);
      break;
    }
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return 0;
  }
  if (firstline && lua_tostring(L, -1)[0] == '=') {
    lua_pushfstring(L, "return %s", lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
  return 1;
}

#define EOFMARK "<eof>"
#define MARKLEN (sizeof(EOFMARK) - 1)

/* A syntax error at <eof> means the statement may continue on the next line. */
static int incomplete (lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    return lmsg >= MARKLEN && strcmp(msg + lmsg - MARKLEN, EOFMARK) == 0;
  }
  return 0;
}

/* Tries the line on top as "return <line>;"; on success replaces the line with the chunk. */
static int addreturn (lua_State *L) {
  const char *retline = lua_pushfstring(L, "return %s;", lua_tostring(L, -1));
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK)
    lua_replace(L, -3);
  else
    lua_pop(L, 1);
  lua_pop(L, 1);
  return status;
}

/*
** Compiles the line on top as a statement, appending lines while it is incomplete. At end
** of input the last syntax error stays on top, so it is reported (lua 5.4.4 printed a
** stale value there). Leaves the chunk or the error message in place of the line.
*/
static int multiline (lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) {
      lua_remove(L, -2);
      return status;
    }
    lua_remove(L, -2);  /* the <eof> error */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads one input: an expression to print or a (multi-line) statement; -1 at end. */
static int loadline (lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!pushline(L, 1))
    return -1;
  if ((status = addreturn(L)) != LUA_OK)
    status = multiline(L);
  return status;
}

/* Prints the values on the stack with the global 'print'. */
static void l_print (lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      l_message(NULL, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
  }
}

/* Read-eval-print loop; errors are shown without the program name, as in lua.c. */
static void doREPL (lua_State *L) {
  int status;
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK)
      status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      l_print(L);
    else
      report_as(L, status, NULL);
  }
  lua_settop(L, 0);
  putchar('\n');
  fflush(stdout);
}


/* ---------------------------------------------------------------- command line */

/* Option bits collected before any Lua code runs. */
#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8
#define has_E 16

/*
** Scans the options and returns their bits, or has_error. '*first' is set to the script's
** index in argv (0 if there is none) or, on error, to the offending option's index.
*/
static int collectargs (char **argv, int *first) {
  int args = 0;
  int i;
  *first = 0;
  if (argv[0] == NULL) return 0;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-')
      return args;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return has_error;
        *first = argv[i + 1] != NULL ? i + 1 : 0;
        return args;
      case '\0':
        return args;  /* "-": stdin is the script */
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'i':
        args |= has_i;  /* -i implies -v */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {  /* argument in the next word */
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = 0;
  return args;
}

/* Runs -e, -l and -W in command-line order, up to argv[optlim]; 0 if one failed. */
static int runargs (lua_State *L, char **argv, int optlim) {
  int i;
  for (i = 1; i < optlim; i++) {
    int option = argv[i][1];
    if (option == 'e' || option == 'l') {
      const char *extra = argv[i] + 2;
      int status;
      if (*extra == '\0') extra = argv[++i];
      status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
      if (status != LUA_OK) return 0;
    }
    else if (option == 'W')
      lua_warning(L, "@on", 0);
  }
  return 1;
}

/* LUA_INIT_5_4, else LUA_INIT: a chunk, or "@file" to run a file. */
static int handle_luainit (lua_State *L) {
  const char *name = "=" INIT_VAR_VERSIONED;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" INIT_VAR;
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, name);
}

/*
** The interpreter proper, run in protected mode so that memory errors while setting up
** are reported. Returns true on success.
*/
static int pmain (lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  const struct ct_embedded *bundled = applet_script(argv[0]);
  int script = 0, args = 0, optlim = 1;
  luaL_checkversion(L);
  if (bundled == NULL) {  /* a plain interpreter command line */
    args = collectargs(argv, &script);
    if (args == has_error) {
      print_usage(argv[script]);
      return 0;
    }
    optlim = script > 0 ? script : argc;
    if (script > 0 && strchr(argv[script], '/') == NULL)
      bundled = find_script(argv[script]);
  }
  if (args & has_v) print_version();
  if (args & has_E) {  /* tells the package library to ignore LUA_PATH and LUA_CPATH */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  preload_modules(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK)
    return 0;
  if (!runargs(L, argv, optlim))
    return 0;
  if (bundled != NULL) {
    if (handle_bundled(L, bundled) != LUA_OK) return 0;
  }
  else if (script > 0) {
    if (handle_script(L, argv + script) != LUA_OK) return 0;
  }
  if (args & has_i)
    doREPL(L);
  else if (bundled == NULL && script == 0 && !(args & (has_e | has_v))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      doREPL(L);
    }
    else if (dofile(L, NULL) != LUA_OK)  /* lua.c exits 0 here; an error must not */
      return 0;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main (int argc, char **argv) {
  int status, result;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message(PROGNAME, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);  /* no collections while the state is being built */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
