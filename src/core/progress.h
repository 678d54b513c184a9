/* Progress reporting on stderr: a live one-line bar when stderr is a terminal, plain
 * periodic lines otherwise (pipes, files, CI logs). */
#ifndef D2C_CORE_PROGRESS_H
#define D2C_CORE_PROGRESS_H

typedef struct {
    const char *label;     /* "train", "condense", ... */
    long total;            /* steps */
    int tty;               /* stderr is a terminal */
    double t_start, t_last_print;
    long print_every;      /* plain mode: print every this many steps */
} Progress;

void progress_begin(Progress *p, const char *label, long start, long total);
/* Reports step (1-based, of total) with a short status text ("loss 0.0312 412 img/s"). */
void progress_update(Progress *p, long step, const char *status);
void progress_end(Progress *p);

#endif
