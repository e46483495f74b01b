/*
 * guest_memory.c — region table and overflow-safe translation of guest-physical and QEMU user addresses.
 *
 * Bounds rule used everywhere: an address a with length l is inside [start, start+size) iff
 *   a >= start && a - start < size && l <= size - (a - start)
 * which never overflows. Zero-length ranges are accepted only at an address inside a region.
 */
#include "guest_memory.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

void gm_init(struct guest_memory *gm)
{
    memset(gm, 0, sizeof *gm);
}

void gm_clear(struct guest_memory *gm)
{
    for (unsigned i = 0; i < gm->n; i++)
        if (gm->r[i].map_base)
            munmap(gm->r[i].map_base, gm->r[i].map_len);
    memset(gm, 0, sizeof *gm);
}

static bool ranges_overlap(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
    /* both ranges are known not to overflow */
    return a < b + bl && b < a + al;
}

static enum hv_err check_new_region(const struct guest_memory *gm, uint64_t gpa, uint64_t size, uint64_t uva)
{
    if (gm->n >= GM_MAX_REGIONS)
        return hv_fail(HV_ERR_GM_BAD_REGION, "more than %d regions", GM_MAX_REGIONS);
    if (size == 0 || gpa > UINT64_MAX - size || uva > UINT64_MAX - size)
        return hv_fail(HV_ERR_GM_BAD_REGION, "region gpa=0x%llx size=0x%llx uva=0x%llx invalid",
                       (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)uva);
    if (size > (uint64_t)SIZE_MAX / 2)
        return hv_fail(HV_ERR_GM_BAD_REGION, "region size 0x%llx too large", (unsigned long long)size);
    for (unsigned i = 0; i < gm->n; i++) {
        if (ranges_overlap(gpa, size, gm->r[i].gpa, gm->r[i].size) ||
            ranges_overlap(uva, size, gm->r[i].uva, gm->r[i].size))
            return hv_fail(HV_ERR_GM_BAD_REGION, "region gpa=0x%llx overlaps region %u", (unsigned long long)gpa, i);
    }
    return HV_OK;
}

enum hv_err gm_add_region(struct guest_memory *gm, uint64_t gpa, uint64_t size, uint64_t uva, uint8_t *host)
{
    enum hv_err e = check_new_region(gm, gpa, size, uva);
    if (e)
        return e;
    struct gm_region *r = &gm->r[gm->n++];
    r->gpa = gpa;
    r->size = size;
    r->uva = uva;
    r->host = host;
    r->map_base = NULL;
    r->map_len = 0;
    return HV_OK;
}

enum hv_err gm_set_table(struct guest_memory *gm, const struct gm_region_desc *regions, const int *fds, unsigned n)
{
    gm_clear(gm);
    if (n > GM_MAX_REGIONS)
        return hv_fail(HV_ERR_GM_BAD_REGION, "%u regions", n);
    for (unsigned i = 0; i < n; i++) {
        const struct gm_region_desc *d = &regions[i];
        enum hv_err e = check_new_region(gm, d->guest_phys_addr, d->memory_size, d->userspace_addr);
        if (e)
            goto fail;
        if (d->mmap_offset > UINT64_MAX - d->memory_size || d->mmap_offset + d->memory_size > (uint64_t)SIZE_MAX / 2) {
            hv_fail(HV_ERR_GM_BAD_REGION, "mmap_offset 0x%llx invalid", (unsigned long long)d->mmap_offset);
            goto fail;
        }
        size_t len = (size_t)(d->mmap_offset + d->memory_size);
        /* never map past the end of the file: touching such pages would SIGBUS */
        struct stat st;
        if (fstat(fds[i], &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < len) {
            hv_fail(HV_ERR_GM_BAD_REGION, "region %u needs %zu bytes of its fd, which has %lld", i, len,
                    (long long)st.st_size);
            goto fail;
        }
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
        if (p == MAP_FAILED) {
            hv_fail(HV_ERR_GM_BAD_REGION, "mmap of region %u (%zu bytes) failed", i, len);
            goto fail;
        }
        struct gm_region *r = &gm->r[gm->n++];
        r->gpa = d->guest_phys_addr;
        r->size = d->memory_size;
        r->uva = d->userspace_addr;
        r->host = (uint8_t *)p + d->mmap_offset;
        r->map_base = p;
        r->map_len = len;
        LOG_INFO("region %u: gpa=0x%llx size=0x%llx uva=0x%llx off=0x%llx", i, (unsigned long long)r->gpa,
                 (unsigned long long)r->size, (unsigned long long)r->uva, (unsigned long long)d->mmap_offset);
    }
    return HV_OK;
fail:
    gm_clear(gm);
    return HV_ERR_GM_BAD_REGION;
}

/* Find the region holding gpa; returns NULL if none. */
static const struct gm_region *find_gpa(const struct guest_memory *gm, uint64_t gpa)
{
    for (unsigned i = 0; i < gm->n; i++) {
        const struct gm_region *r = &gm->r[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size)
            return r;
    }
    return NULL;
}

enum hv_err gm_translate(const struct guest_memory *gm, uint64_t gpa, uint64_t len, uint8_t **host)
{
    const struct gm_region *r = find_gpa(gm, gpa);
    if (!r)
        return HV_ERR_GM_ADDR_NOT_MAPPED;
    uint64_t off = gpa - r->gpa;
    if (len > r->size - off)
        return HV_ERR_GM_ADDR_NOT_MAPPED;
    *host = r->host + off;
    return HV_OK;
}

enum hv_err gm_translate_iov(const struct guest_memory *gm, uint64_t gpa, uint64_t len, struct iovec *iov,
                             unsigned max, unsigned *n)
{
    unsigned k = *n;
    /* a zero-length buffer still has to point into guest memory */
    if (len == 0)
        return find_gpa(gm, gpa) ? HV_OK : HV_ERR_GM_ADDR_NOT_MAPPED;
    while (len > 0) {
        const struct gm_region *r = find_gpa(gm, gpa);
        if (!r)
            return HV_ERR_GM_ADDR_NOT_MAPPED;
        if (k >= max)
            return HV_ERR_GM_TOO_MANY_SEGMENTS;
        uint64_t off = gpa - r->gpa;
        uint64_t chunk = r->size - off;
        if (chunk > len)
            chunk = len;
        iov[k].iov_base = r->host + off;
        iov[k].iov_len = (size_t)chunk;
        k++;
        len -= chunk;
        if (len == 0)
            break;
        /* continue in the region that starts exactly where this one ends (if any) */
        if (gpa > UINT64_MAX - chunk)
            return HV_ERR_GM_ADDR_NOT_MAPPED;
        gpa += chunk;
    }
    *n = k;
    return HV_OK;
}

enum hv_err gm_uva_to_host(const struct guest_memory *gm, uint64_t uva, uint64_t len, uint8_t **host)
{
    for (unsigned i = 0; i < gm->n; i++) {
        const struct gm_region *r = &gm->r[i];
        if (uva >= r->uva && uva - r->uva < r->size) {
            uint64_t off = uva - r->uva;
            if (len > r->size - off)
                return HV_ERR_GM_ADDR_NOT_MAPPED;
            *host = r->host + off;
            return HV_OK;
        }
    }
    return HV_ERR_GM_ADDR_NOT_MAPPED;
}
