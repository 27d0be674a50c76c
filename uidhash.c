/*
 * uidhash.c: the digest behind an mbox UIDL, SipHash-2-4 with its 128-bit
 * output (Aumasson and Bernstein, "SipHash: a fast short-input PRF", and
 * the 128-bit variant of the reference implementation).
 *
 * It replaced MD5, which took ~40% of the user CPU of the scan
 * (HACKING.md).  A UIDL has to be the same in every session, not secret,
 * so the key is fixed and public; nor does it need collision resistance
 * against whoever sends the mail (MD5 gave none either, and dedup keeps
 * colliding UIDLs distinct).  Changing the key, or anything here, changes
 * every mbox UIDL.
 *
 * The scan feeds line pieces of any length: whole 8-byte words are taken
 * straight from the input, the bytes of a word that is not complete yet
 * wait in tail.
 */
#include <endian.h>
#include <string.h>

#include "pop3d.h"

/* Not a secret: it only has to stay the same (see above). */
static const char uidl_key[] = "pop3d uidl v1...";
_Static_assert(sizeof(uidl_key) == 16 + 1, "the key is 16 bytes");

#define ROTL(x, b)	(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND(v0, v1, v2, v3) do {					\
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);	\
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;				\
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;				\
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);	\
} while (0)

/* Two rounds per message word: the "2" of SipHash-2-4. */
#define COMPRESS(v0, v1, v2, v3, m) do {				\
	v3 ^= (m);							\
	SIPROUND(v0, v1, v2, v3);					\
	SIPROUND(v0, v1, v2, v3);					\
	v0 ^= (m);							\
} while (0)

/* SipHash reads its input as little-endian words, on any host. */
static inline uint64_t
load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return le64toh(w);
}

void
uidhash_init_key(struct uidhash *h, const unsigned char key[16])
{
	uint64_t k0 = load64(key), k1 = load64(key + 8);

	h->v[0] = k0 ^ 0x736f6d6570736575ULL;
	h->v[1] = k1 ^ 0x646f72616e646f6dULL ^ 0xee;	/* 128-bit output */
	h->v[2] = k0 ^ 0x6c7967656e657261ULL;
	h->v[3] = k1 ^ 0x7465646279746573ULL;
	h->tail = 0;
	h->len = 0;
}

void
uidhash_init(struct uidhash *h)
{
	uidhash_init_key(h, (const unsigned char *)uidl_key);
}

void
uidhash_update(struct uidhash *h, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	uint64_t v0 = h->v[0], v1 = h->v[1], v2 = h->v[2], v3 = h->v[3];
	uint64_t t = h->tail;	/* a local: p's bytes cannot alias it */
	unsigned int have = (unsigned int)(h->len & 7);

	h->len += n;
	if (have > 0) {
		/* Complete the word that the last call began. */
		for (; have < 8 && n > 0; have++, n--)
			t |= (uint64_t)*p++ << (8 * have);
		if (have < 8) {
			h->tail = t;
			return;
		}
		COMPRESS(v0, v1, v2, v3, t);
		t = 0;
	}
	for (; n >= 8; p += 8, n -= 8)
		COMPRESS(v0, v1, v2, v3, load64(p));
	for (have = 0; have < n; have++)
		t |= (uint64_t)p[have] << (8 * have);
	h->tail = t;
	h->v[0] = v0;
	h->v[1] = v1;
	h->v[2] = v2;
	h->v[3] = v3;
}

/* SipHash's d = 4 finalization rounds, then one 64-bit half, LE. */
#define OUTPUT(v0, v1, v2, v3, out) do {				\
	uint64_t r_;							\
	int i_;								\
									\
	for (i_ = 0; i_ < 4; i_++)					\
		SIPROUND(v0, v1, v2, v3);				\
	r_ = htole64(v0 ^ v1 ^ v2 ^ v3);				\
	memcpy((out), &r_, 8);						\
} while (0)

void
uidhash_final(struct uidhash *h, unsigned char out[16])
{
	uint64_t v0 = h->v[0], v1 = h->v[1], v2 = h->v[2], v3 = h->v[3];
	uint64_t b = h->tail | h->len << 56;

	COMPRESS(v0, v1, v2, v3, b);
	v2 ^= 0xee;
	OUTPUT(v0, v1, v2, v3, out);
	v1 ^= 0xdd;
	OUTPUT(v0, v1, v2, v3, out + 8);
}
