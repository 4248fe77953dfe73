// LD_PRELOAD shim for chat_harness: the wall clock reads CHAT_HARNESS_EPOCH (seconds since the epoch), so that
// templates that print the date (strftime_now, datetime, date_string) render the same on every run of the golden
// generator.  Other clocks (CLOCK_MONOTONIC, ...) are the real ones.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static time_t fixed_epoch(void) {
    const char * s = getenv("CHAT_HARNESS_EPOCH");
    return s ? (time_t) atoll(s) : 0;
}

time_t time(time_t * t) {
    time_t v = fixed_epoch();
    if (t) *t = v;
    return v;
}

int gettimeofday(struct timeval * tv, void * tz) {
    (void) tz;
    if (tv) { tv->tv_sec = fixed_epoch(); tv->tv_usec = 0; }
    return 0;
}

int clock_gettime(clockid_t clk, struct timespec * ts) {
    if (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE) {
        ts->tv_sec = fixed_epoch();
        ts->tv_nsec = 0;
        return 0;
    }
    static int (*real)(clockid_t, struct timespec *) = 0;
    if (!real) real = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT, "clock_gettime");
    return real(clk, ts);
}
