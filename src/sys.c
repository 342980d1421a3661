/*
 * System queries: the number of physical cores (the default thread count).
 *
 * Linux: the CPUs this process may run on (sched_getaffinity) are mapped to their
 * (package id, core id) from /sys/devices/system/cpu/cpuN/topology, falling back to
 * /proc/cpuinfo's "physical id" / "core id"; hyperthread siblings share a pair, so the number of
 * distinct pairs is the number of physical cores. The result is capped by a cgroup v2 CPU quota
 * (/sys/fs/cgroup/cpu.max, rounded up) so a container limited to 2 CPUs does not start 32 threads.
 * Anything unreadable falls back to sysconf(_SC_NPROCESSORS_ONLN). Always >= 1.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "llamita.h"

#define LM_MAX_CPUS 4096

/* Reads one integer from a small text file. False when absent or unparsable. */
static bool lm_read_long(const char *path, long *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    long v;
    int n = fscanf(f, "%ld", &v);
    fclose(f);
    if (n != 1) return false;
    *out = v;
    return true;
}

/* Counts distinct (package, core) pairs among pairs[0..n). */
static int32_t lm_count_distinct(long (*pairs)[2], int n) {
    int32_t distinct = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = pairs[j][0] == pairs[i][0] && pairs[j][1] == pairs[i][1];
        if (!seen) distinct++;
    }
    return distinct;
}

/* Physical cores among the CPUs in `set`, from sysfs topology. 0 when unavailable. */
static int32_t lm_cores_sysfs(const cpu_set_t *set, long (*pairs)[2]) {
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && cpu < LM_MAX_CPUS; cpu++) {
        if (!CPU_ISSET(cpu, set)) continue;
        char path[128];
        long pkg, core;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        if (!lm_read_long(path, &pkg)) return 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (!lm_read_long(path, &core)) return 0;
        pairs[n][0] = pkg;
        pairs[n][1] = core;
        n++;
    }
    return lm_count_distinct(pairs, n);
}

/* Physical cores among the CPUs in `set`, from /proc/cpuinfo. 0 when unavailable. */
static int32_t lm_cores_cpuinfo(const cpu_set_t *set, long (*pairs)[2]) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[512];
    long proc = -1, pkg = -1, core = -1;
    int n = 0;
    bool complete = true;
    for (;;) {
        bool eof = fgets(line, sizeof line, f) == NULL;
        if (eof || line[0] == '\n') { /* end of one processor's block */
            if (proc >= 0) {
                if (pkg < 0 || core < 0) complete = false;
                else if (proc < CPU_SETSIZE && CPU_ISSET((int)proc, set) && n < LM_MAX_CPUS) {
                    pairs[n][0] = pkg;
                    pairs[n][1] = core;
                    n++;
                }
            }
            proc = pkg = core = -1;
            if (eof) break;
            continue;
        }
        const char *colon = strchr(line, ':');
        if (!colon) continue;
        long v = strtol(colon + 1, NULL, 10);
        if (strncmp(line, "processor", 9) == 0) proc = v;
        else if (strncmp(line, "physical id", 11) == 0) pkg = v;
        else if (strncmp(line, "core id", 7) == 0) core = v;
    }
    fclose(f);
    return complete ? lm_count_distinct(pairs, n) : 0;
}

/* ceil(quota / period) from cgroup v2 cpu.max ("max 100000" = unlimited). 0 when none. */
static int32_t lm_cgroup_cpu_limit(void) {
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (!f) return 0;
    char quota[32] = {0};
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || period <= 0 || strcmp(quota, "max") == 0) return 0;
    char *end;
    long q = strtol(quota, &end, 10);
    if (*end || q <= 0) return 0;
    long lim = (q + period - 1) / period;
    return lim > 0 && lim < INT32_MAX ? (int32_t)lim : 0;
}

int32_t llamita_n_physical_cores(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int32_t result = online > 0 && online < INT32_MAX ? (int32_t)online : 1;

    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        long (*pairs)[2] = malloc(sizeof(long[2]) * LM_MAX_CPUS);
        if (pairs) {
            int32_t cores = lm_cores_sysfs(&set, pairs);
            if (cores <= 0) cores = lm_cores_cpuinfo(&set, pairs);
            if (cores <= 0) cores = CPU_COUNT(&set);
            result = cores;
            free(pairs);
        }
    }
    int32_t lim = lm_cgroup_cpu_limit();
    if (lim > 0 && lim < result) result = lim;
    return result >= 1 ? result : 1;
}
