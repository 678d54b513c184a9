/* Terminal progress bar or plain progress lines. */
#include "core/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "core/util.h"

void progress_begin(Progress *p, const char *label, long start, long total) {
    p->label = label;
    p->total = total;
    p->tty = isatty(fileno(stderr));
    p->t_start = now_seconds();
    p->t_last_print = 0;
    long left = total - start;
    p->print_every = left >= 20 ? left / 20 : 1;
    (void)start;
}

static void format_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "--:--");
    else if (s >= 3600) snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

void progress_update(Progress *p, long step, const char *status) {
    double now = now_seconds();
    double frac = p->total > 0 ? (double)step / p->total : 1.0;
    double elapsed = now - p->t_start;
    char eta[32];
    format_eta(eta, sizeof eta, frac > 0 ? elapsed * (1 - frac) / frac : -1);
    if (p->tty) {
        if (now - p->t_last_print < 0.1 && step < p->total) return;
        p->t_last_print = now;
        const int width = 24;
        int filled = (int)(frac * width + 0.5);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %ld/%ld %s eta %s", p->label, bar, step, p->total, status, eta);
        fflush(stderr);
        stderr_live_line(1);
    } else if (step == p->total || step % p->print_every == 0 || step == 1) {
        fprintf(stderr, "%s step %ld/%ld %s eta %s\n", p->label, step, p->total, status, eta);
    }
}

void progress_end(Progress *p) {
    if (p->tty) fprintf(stderr, "\n");
    stderr_live_line(0);
    fflush(stderr);
}
