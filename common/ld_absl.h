/* ld_absl: turn off Abseil's Mutex deadlock detection in the servers.
 *
 * gRPC C core takes its locks through Abseil (gpr_mu is an absl::Mutex).
 * Debian builds Abseil without NDEBUG, so every Mutex::Lock also runs the
 * debug-only deadlock detector: it looks the lock up in a global graph of
 * lock ids under a process-wide spinlock, records held locks and their
 * stacks, and aborts the process when two locks were ever taken in both
 * orders. On a 1-row GetOnlineFeatures call that is about 3,300 of 95,000
 * instructions (callgrind), plus a spinlock every server thread shares; and
 * a report of a merely possible deadlock would kill a serving process.
 *
 * Abseil's switch for it, absl::SetMutexDeadlockDetectionMode(kIgnore), is
 * C++: it is looked up by its mangled name (Debian's inline namespace
 * "debian3", upstream's LTS namespace, or none) and called before gRPC
 * starts. Where none is found the detector stays as the library was built. */
#pragma once

/**
 * ld_absl_deadlock_detection_off() - stop Abseil's Mutex deadlock detector.
 *
 * Call it before grpc_init(), before any other thread exists.
 *
 * Return: 1 when Abseil's switch was found and called, 0 when this process
 * has no such function (an Abseil built without it, or not loaded).
 */
int ld_absl_deadlock_detection_off(void);
