/*
 * fuzz_base64.c: libFuzzer target for auth_base64, the SASL decoder.
 *
 * The input is hostile base64 text, as a client sends after AUTH PLAIN
 * (RFC 5034 §4).  The decoder must never touch bytes outside the input or
 * the output it was given, must accept exactly RFC 4648 base64 with
 * padding, and must give back what an encoder put in: each input is also
 * taken as raw bytes, encoded here and decoded again.  Runs as whoever
 * runs the fuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d.h"
#include "fuzz.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 §4 with padding; out has room for 4 * ((n + 2) / 3) bytes. */
static size_t
encode(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];

		out[o++] = b64[v >> 18];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = b64[v >> 6 & 63];
		out[o++] = b64[v & 63];
	}
	if (n - i == 1) {
		out[o++] = b64[in[i] >> 2];
		out[o++] = b64[(in[i] & 3) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		out[o++] = b64[in[i] >> 2];
		out[o++] = b64[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = b64[(in[i + 1] & 15) << 2];
		out[o++] = '=';
	}
	return o;
}

static int
value(unsigned char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;

	return p != NULL ? (int)(p - b64) : -1;
}

/*
 * The reference decoder, written from RFC 4648 alone: groups of four, '='
 * only as the last one or two characters.  The decoded length, or -1.
 * Bits left over before the padding are not checked (RFC 4648 §3.5 lets
 * a decoder ignore them, and auth_base64 does).
 */
static long
ref_decode(const unsigned char *in, size_t n, unsigned char *out)
{
	size_t i, o = 0, pad = 0;

	if (n % 4 != 0)
		return -1;
	if (n >= 1 && in[n - 1] == '=')
		pad++;
	if (n >= 2 && in[n - 2] == '=') {
		if (pad == 0)
			return -1;
		pad++;
	}
	for (i = 0; i < n; i += 4) {
		uint32_t v = 0;
		size_t k;

		for (k = 0; k < 4; k++) {
			int d = value(in[i + k]);

			if (d == -1 && !(i + k >= n - pad))
				return -1;
			v = v << 6 | (uint32_t)(d == -1 ? 0 : d);
		}
		out[o++] = (unsigned char)(v >> 16);
		if (!(i + 4 == n && pad == 2))
			out[o++] = (unsigned char)(v >> 8);
		if (!(i + 4 == n && pad >= 1))
			out[o++] = (unsigned char)v;
	}
	return (long)o;
}

/* auth_base64 into a heap buffer of exactly n bytes, so ASan sees it. */
static int
decode(const void *in, size_t len, unsigned char *copy, size_t n)
{
	unsigned char *out = malloc(n > 0 ? n : 1);
	int r;

	CHECK(out != NULL);
	r = auth_base64(in, len, out, n);
	if (r > 0)
		memcpy(copy, out, (size_t)r);
	free(out);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *ref, *got, *raw;
	char *enc, *in;
	long want;
	int r;

	/* auth_base64 reports its length as an int; SASL lines are 1 KB. */
	if (size > 64 * 1024)
		return 0;
	ref = malloc(size + 1);
	got = malloc(size + 1);
	enc = malloc(4 * (size / 3 + 1) + 1);
	in = malloc(size > 0 ? size : 1);	/* exact: reads past it trap */
	CHECK(ref != NULL && got != NULL && enc != NULL && in != NULL);
	if (size > 0)
		memcpy(in, data, size);

	/* The input as base64 text, with plenty of room. */
	want = ref_decode(data, size, ref);
	r = decode(in, size, got, size);
	CHECK(r == want);
	if (r > 0) {
		CHECK(memcmp(got, ref, (size_t)r) == 0);
		/* Exactly enough room works, one byte less is refused. */
		CHECK(decode(in, size, got, (size_t)r) == r);
		CHECK(memcmp(got, ref, (size_t)r) == 0);
		CHECK(decode(in, size, got, (size_t)r - 1) == -1);
	}
	if (r >= 0) {
		/* Re-encoded, it decodes to the same bytes again. */
		size_t elen = encode(ref, (size_t)r, enc);

		CHECK(elen == size);
		CHECK(decode(enc, elen, got, size) == r);
		CHECK(r == 0 || memcmp(got, ref, (size_t)r) == 0);
	}

	/* The input as raw bytes: encoded here, decoded to the same. */
	size_t elen = encode(data, size, enc);

	raw = malloc(size > 0 ? size : 1);
	CHECK(raw != NULL);
	CHECK(decode(enc, elen, raw, size) == (int)size);
	CHECK(size == 0 || memcmp(raw, data, size) == 0);
	free(raw);
	free(in);
	free(enc);
	free(got);
	free(ref);
	return 0;
}
