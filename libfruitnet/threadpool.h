/*
 * threadpool.h — the persistent thread pool (private, threadpool.c), a kernel-layer
 * service: the layers and the model split their work over it.
 */
#ifndef FRUITNET_THREADPOOL_H
#define FRUITNET_THREADPOOL_H

typedef struct fn_pool fn_pool;
/* Task body: called once on every thread with its id in [0, nthreads). */
typedef void (*fn_task)(void *arg, int tid, int nthreads);

/* Persistent pool of nthreads (>= 1; the caller counts as thread 0). */
fn_pool *fn_pool_create(int nthreads);
int fn_pool_threads(const fn_pool *p);
/* Run task on all threads and wait for all of them (a barrier). */
void fn_pool_run(fn_pool *p, fn_task task, void *arg);
void fn_pool_destroy(fn_pool *p);

#endif /* FRUITNET_THREADPOOL_H */
