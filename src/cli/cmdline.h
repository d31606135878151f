/*
 * Argument parsing shared by the client subcommands (`vigil publish`, `demo`, `bench`).
 */
#ifndef VG_CLI_CMDLINE_H
#define VG_CLI_CMDLINE_H

/* Matches "--name VALUE" and "--name=VALUE".  Returns 1 and sets *value (advancing *i past a
 * separate value), 0 when argv[*i] is another option, -1 when the value is missing. */
int vg_cmdline_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Prints "vigil <command>: <message>" and a pointer to --help on stderr; returns 2 (bad usage). */
__attribute__((format(printf, 2, 3))) int vg_cmdline_usage_error(const char *command,
                                                                 const char *fmt, ...);

#endif
