#include "cli/cmdline.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int vg_cmdline_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

int vg_cmdline_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vigil %s: ", command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see vigil %s --help)\n", command);
    va_end(ap);
    return 2;
}
