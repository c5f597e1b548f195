/*
 * bench/tlsprobe.c: an LD_PRELOAD shim for wrk's TLS connections, built by bench/run
 * (with `cc`) into its temporary directory for the tlsnew scenario.
 *
 * wrk keeps one OpenSSL SSL object per connection slot; when the server closes a
 * connection (a response with `Connection: close`), wrk calls SSL_shutdown and SSL_clear
 * on it and connects again with the same object. SSL_clear keeps the session, so the
 * next handshake offers to resume it (a TLS 1.3 ticket, a TLS 1.2 ticket or session id),
 * and whether it is resumed is then up to the server's ticket and cache settings. wrk has
 * no switch for this. The shim wraps SSL_clear:
 *
 *   - it counts the connections that completed a handshake and how many of those
 *     handshakes were resumptions, and prints on stderr when wrk exits
 *         tlsprobe: N TLS connections closed, M resumed
 *     (bench/benchtool.py reads it), so the share of resumed handshakes each server
 *     really gave is measured, not assumed;
 *   - with TLSPROBE_FRESH=1 it also drops the session before wrk reconnects, so that
 *     every handshake is a full one (key exchange and certificate signature) whatever
 *     the server offers.
 *
 * libssl's functions are looked up at run time (dlsym), so the shim links nothing and
 * needs no OpenSSL headers; in a process that never calls SSL_clear it does nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

static int (*real_clear)(SSL *);
static int (*session_reused)(const SSL *);
static int (*init_finished)(const SSL *);
static int (*set_session)(SSL *, SSL_SESSION *);
static int fresh;
static unsigned long closed, resumed;

static void init(void) {
    const char *f = getenv("TLSPROBE_FRESH");
    real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    session_reused = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_session_reused");
    init_finished = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_is_init_finished");
    set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
    fresh = f != NULL && f[0] == '1';
}

int SSL_clear(SSL *s) {
    if (real_clear == NULL) init();
    if (real_clear == NULL) return 0; /* no libssl: cannot happen in a caller of SSL_clear */
    /* Only an object that completed a handshake is counted: SSL_clear is also called on
     * a new object (SSL_new) and again when a cleared one connects (SSL_connect). */
    if (init_finished != NULL && init_finished(s)) {
        __atomic_add_fetch(&closed, 1, __ATOMIC_RELAXED);
        if (session_reused != NULL && session_reused(s)) __atomic_add_fetch(&resumed, 1, __ATOMIC_RELAXED);
        if (fresh && set_session != NULL) set_session(s, NULL);
    }
    return real_clear(s);
}

__attribute__((destructor)) static void report(void) {
    if (real_clear == NULL) return; /* SSL_clear never called: nothing to say */
    fprintf(stderr, "tlsprobe: %lu TLS connections closed, %lu resumed%s\n", closed, resumed,
            fresh ? " (sessions dropped: TLSPROBE_FRESH=1)" : "");
}
