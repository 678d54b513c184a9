/* Table-driven option parsing for the subcommands. */
#include "cli/args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

const Option *find_option(const Option *opts, const char *name) {
    for (const Option *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

void print_option_help(const Option *opts) {
    for (const Option *o = opts; o->name; o++) {
        char left[64];
        const char *arg = o->kind == OPT_INT ? " N" : o->kind == OPT_FLOAT ? " X" : o->kind == OPT_STRING ? " S" : "";
        snprintf(left, sizeof left, "--%s%s", o->name, arg);
        printf("  %-24s %s\n", left, o->help);
    }
}

static int set_value(const char *command, Option *o, const char *value) {
    if (o->kind == OPT_STRING) {
        if (!*value) return d2c_error(D2C_ERR_INPUT, "%s: option --%s needs a non-empty value", command, o->name);
        *(const char **)o->dst = value;
        return D2C_OK;
    }
    double v;
    if (o->kind == OPT_INT) {
        long l;
        if (parse_long(value, &l))
            return d2c_error(D2C_ERR_INPUT, "%s: option --%s expects an integer, got '%.64s'", command, o->name, value);
        v = (double)l;
    } else if (parse_double(value, &v)) {
        return d2c_error(D2C_ERR_INPUT, "%s: option --%s expects a number, got '%.64s'", command, o->name, value);
    }
    if (o->min <= o->max && (v < o->min || v > o->max)) {
        if (o->kind == OPT_INT)
            return d2c_error(D2C_ERR_INPUT, "%s: option --%s must be in [%.0f, %.0f], got %.64s", command, o->name, o->min,
                             o->max, value);
        return d2c_error(D2C_ERR_INPUT, "%s: option --%s must be in [%g, %g], got %.64s", command, o->name, o->min, o->max,
                         value);
    }
    /* an integer option without a range must still fit an int */
    if (o->kind == OPT_INT && (v < -2147483648.0 || v > 2147483647.0))
        return d2c_error(D2C_ERR_INPUT, "%s: option --%s is out of range, got %.64s", command, o->name, value);
    if (o->kind == OPT_INT) *(int *)o->dst = (int)v;
    else *(double *)o->dst = v;
    return D2C_OK;
}

int parse_options(const char *command, const char *usage, Option *opts, int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("%s\n\nOptions:\n", usage);
            print_option_help(opts);
            return ARGS_HELP;
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return d2c_error(D2C_ERR_INPUT, "%s: unexpected argument '%.64s' (options start with --; see d2c %s --help)",
                             command, arg, command);
        char name[64];
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof name)
            return d2c_error(D2C_ERR_INPUT, "%s: unknown option '%.64s...' (see d2c %s --help)", command, arg, command);
        memcpy(name, arg + 2, len);
        name[len] = 0;
        Option *o = (Option *)find_option(opts, name);
        if (!o) return d2c_error(D2C_ERR_INPUT, "%s: unknown option '--%s' (see d2c %s --help)", command, name, command);
        o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (eq) return d2c_error(D2C_ERR_INPUT, "%s: option --%s takes no value", command, name);
            *(int *)o->dst = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) return d2c_error(D2C_ERR_INPUT, "%s: option --%s needs a value", command, name);
        D2C_TRY(set_value(command, o, value));
    }
    return D2C_OK;
}

int require_option(const char *command, const Option *opts, const char *name) {
    const Option *o = find_option(opts, name);
    if (!o || !o->seen)
        return d2c_error(D2C_ERR_INPUT, "%s: missing required option --%s (see d2c %s --help)", command, name, command);
    return D2C_OK;
}
