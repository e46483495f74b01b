/*
 * guest_memory.h — the guest memory region table QEMU hands us (VHOST_USER_SET_MEM_TABLE) and address translation.
 *
 * Two address spaces are translated: guest-physical addresses (descriptor buffers) and QEMU user addresses (vring
 * addresses in SET_VRING_ADDR). Every translation is bounds-checked without ever computing addr + len, so a hostile
 * guest cannot make us touch anything outside the mappings QEMU gave us.
 */
#ifndef HV_GUEST_MEMORY_H
#define HV_GUEST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "log.h"

#define GM_MAX_REGIONS 8

struct gm_region {
    uint64_t gpa;       /* guest physical start */
    uint64_t size;      /* bytes */
    uint64_t uva;       /* QEMU user address of the start */
    uint8_t *host;      /* our address of the start */
    void *map_base;     /* what to munmap (NULL when not owned) */
    size_t map_len;
};

struct guest_memory {
    unsigned n;
    struct gm_region r[GM_MAX_REGIONS];
};

/* Region as sent by QEMU in SET_MEM_TABLE. */
struct gm_region_desc {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};

void gm_init(struct guest_memory *gm);
/* Unmap everything we own and empty the table. */
void gm_clear(struct guest_memory *gm);
/* Add a region that is already mapped at host (tests, fuzzing; not owned). */
enum hv_err gm_add_region(struct guest_memory *gm, uint64_t gpa, uint64_t size, uint64_t uva, uint8_t *host);
/* Replace the table: mmap each fd MAP_SHARED. On failure the table is left empty. Does not close the fds. */
enum hv_err gm_set_table(struct guest_memory *gm, const struct gm_region_desc *regions, const int *fds, unsigned n);

/* Translate [gpa, gpa+len) to one contiguous host range; fails if it is not wholly inside one region. */
enum hv_err gm_translate(const struct guest_memory *gm, uint64_t gpa, uint64_t len, uint8_t **host);
/* Translate [gpa, gpa+len) to host iovecs, splitting where it crosses into an adjacent region. Appends at
 * iov[*n]; max is the capacity of iov. */
enum hv_err gm_translate_iov(const struct guest_memory *gm, uint64_t gpa, uint64_t len, struct iovec *iov,
                             unsigned max, unsigned *n);
/* Translate a QEMU user address range (ring addresses) to one contiguous host range. */
enum hv_err gm_uva_to_host(const struct guest_memory *gm, uint64_t uva, uint64_t len, uint8_t **host);

#endif
