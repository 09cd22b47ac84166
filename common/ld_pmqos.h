/* ld_pmqos: an optional CPU wake-up latency request for the whole machine,
 * through the kernel's PM QoS interface (/dev/cpu_dma_latency).
 *
 * Why: on a VM whose idle vCPUs halt (cpuidle haltpoll with polling off, or
 * plain HLT), every request that arrives at an idle server pays a halted
 * vCPU's wake-up, a VM exit and an IPI, and the tail of that, not larder's
 * work, is what bounds p99 at low load (bench/README.md, "Latency floor").
 * Holding a latency limit of N µs keeps the CPUs in idle states that wake
 * within N µs; 0 makes idle CPUs poll. It is what tuned's latency-performance
 * profile does (force_latency), and it costs the power of CPUs that poll
 * instead of sleeping — which is why it is off unless asked for
 * (larder.cpu_dma_latency_us, --cpu-dma-latency).
 *
 * The request lasts while the file stays open, so the daemon holds it for
 * its lifetime and the kernel drops it when the process exits, however it
 * exits. Opening the file needs root (or write access to it): without it the
 * caller gets an error to log and carries on with the system's policy. */
#pragma once

#include "ld_status.h"

typedef struct ld_pmqos ld_pmqos;

/**
 * ld_pmqos_hold() - ask that no CPU take longer than @latency_us to wake.
 * @latency_us: 0..2,000,000,000
 * @out:        on success the held request, for ld_pmqos_release
 *
 * Return: 0, or -1 with @st set (FAILED_PRECONDITION when the device cannot
 * be opened or written; INVALID_ARGUMENT for a value out of range).
 */
int ld_pmqos_hold(long latency_us, ld_pmqos **out, ld_status *st);

/* The limit the kernel currently applies (the smallest of all requests), or
 * -1 when it cannot be read. */
long ld_pmqos_current(void);

/* Drop the request (NULL is fine). */
void ld_pmqos_release(ld_pmqos *q);
