/* LD_PRELOAD shim for the conformance suite (real_life/no_threads.rs):
 * pthread_create fails with EAGAIN, as when a pids cgroup or RLIMIT_NPROC
 * is exhausted, once the file named by EXIT_HOOK_NO_THREADS exists. The
 * scenario makes that file itself once it has installed the crate, so
 * the crate's signal thread exists and no thread can start after it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                   void *(*start)(void *), void *arg) {
    const char *flag = getenv("EXIT_HOOK_NO_THREADS");
    if (flag != NULL && access(flag, F_OK) == 0) {
        return EAGAIN;
    }
    create_fn real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    return real(thread, attr, start, arg);
}
