/*
 * Subcommands other than `serve`.  Each takes the arguments after its name and returns the
 * process exit status (0 ok, 1 failure, 2 bad usage).
 */
#ifndef VG_CLI_COMMANDS_H
#define VG_CLI_COMMANDS_H

int vg_cmd_token(int argc, char **argv);   /* vigil token ...   (cli/cmd_token.c) */
int vg_cmd_publish(int argc, char **argv); /* vigil publish ... (cli/cmd_publish.c) */
int vg_cmd_bench(int argc, char **argv);   /* vigil bench ...   (cli/bench.c) */
int vg_cmd_demo(int argc, char **argv);    /* vigil demo ...    (cli/cmd_demo.c) */

#endif
