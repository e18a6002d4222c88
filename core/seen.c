/*
 * The subscriber's view for resync: what an events object has told Lua
 * about each live entry, kept so that after an overrun a fresh dump can be
 * turned into the events that were lost: new for entries the subscriber
 * has not seen, update where they changed, destroy for those gone.
 *
 * An entry is its identity (struct ct_identity: kernel id, original tuple
 * and zones, enough to build the flow of a synthetic destroy) and a
 * fingerprint of what can change: status, mark, state, labels, helper.
 * Counters and the timeout are left out; they change all the time and are
 * not news. An open-addressing hash table, 56 bytes a slot, keyed by the
 * whole identity: the id is a 32-bit hash, and two live entries of 100,000
 * share one about once in a run, which must not merge them in the view.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * The probe run starts at the id's hash alone: entries that share an id
 * (rare) share a run, and are told apart there by their tuples.
 */
struct seen_entry {
	struct ct_identity key;	/* key.id 0: an empty slot */
	uint32_t fingerprint;
	uint32_t generation;	/* of the last resync that found it */
};

struct ct_seen {
	struct seen_entry *slots;
	size_t size, used;	/* size is a power of two */
	size_t sweep;		/* where the search for gone entries goes on */
};

static uint32_t hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	return x ^ (x >> 16);
}

static uint32_t fnv1a(uint32_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619U;
	return h;
}

static uint32_t fingerprint(const struct ct_entry *e)
{
	static const enum nf_conntrack_attr words[] = { ATTR_STATUS, ATTR_MARK };
	static const enum nf_conntrack_attr states[] = {
		ATTR_TCP_STATE, ATTR_SCTP_STATE, ATTR_DCCP_STATE,
	};
	uint32_t h = 2166136261U;

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		uint32_t v = ct_entry_has(e, words[i]) ? ct_entry_u32(e, words[i]) : 0;

		h = fnv1a(h, &v, sizeof(v));
	}
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		uint8_t v = ct_entry_has(e, states[i]) ? ct_entry_u8(e, states[i]) : 0;

		h = fnv1a(h, &v, sizeof(v));
	}
	if (ct_entry_has(e, ATTR_HELPER_NAME)) {
		const char *helper = ct_entry_ptr(e, ATTR_HELPER_NAME);

		h = fnv1a(h, helper, strlen(helper));
	}
	if (ct_entry_has(e, ATTR_CONNLABELS)) {
		const struct ct_labels labels = ct_entry_labels(e);
		unsigned int bits = ct_labels_bits(&labels);

		for (unsigned int bit = 0; bit < bits; bit++)
			if (ct_labels_test(&labels, bit))
				h = fnv1a(h, &bit, sizeof(bit));
	}
	return h;
}

struct ct_seen *ct_seen_new(void)
{
	struct ct_seen *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->size = 1024;
	s->slots = calloc(s->size, sizeof(*s->slots));
	if (!s->slots) {
		free(s);
		return NULL;
	}
	return s;
}

void ct_seen_free(struct ct_seen *s)
{
	if (s) {
		free(s->slots);
		free(s);
	}
}

/* The slot of the entry named by key, or the empty slot where it would go. */
static struct seen_entry *find(const struct ct_seen *s, const struct ct_identity *key)
{
	for (size_t i = hash32(key->id) & (s->size - 1);; i = (i + 1) & (s->size - 1)) {
		const struct seen_entry *e = &s->slots[i];

		if (e->key.id == 0 || memcmp(&e->key, key, sizeof(*key)) == 0)
			return &s->slots[i];
	}
}

/* Remove e, moving up the entries of its probe run that would be cut off. */
static void remove_entry(struct ct_seen *s, struct seen_entry *e)
{
	size_t hole = (size_t)(e - s->slots);

	e->key.id = 0;
	s->used--;
	for (size_t i = (hole + 1) & (s->size - 1); s->slots[i].key.id; i = (i + 1) & (s->size - 1)) {
		size_t home = hash32(s->slots[i].key.id) & (s->size - 1);

		/* move it if its home is not in the cyclic range (hole, i] */
		if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
			s->slots[hole] = s->slots[i];
			s->slots[i].key.id = 0;
			hole = i;
		}
	}
}

static int grow(struct ct_seen *s)
{
	struct seen_entry *old = s->slots;
	size_t old_size = s->size;

	s->slots = calloc(old_size * 2, sizeof(*s->slots));
	if (!s->slots) {
		s->slots = old;
		return ENOMEM;
	}
	s->size = old_size * 2;
	for (size_t i = 0; i < old_size; i++)
		if (old[i].key.id)
			*find(s, &old[i].key) = old[i];
	free(old);
	s->sweep = 0;
	return 0;
}

/*
 * Record what the subscriber was told about entry e (indexed or parsed):
 * for "destroy" it is gone, otherwise it is live as it is now; generation
 * marks it found by the current resync. Returns CT_SEEN_NEW, CT_SEEN_CHANGED or CT_SEEN_SAME
 * (what a resync should deliver), or -ENOMEM.
 */
int ct_seen_record(struct ct_seen *s, const struct ct_entry *e, bool destroyed,
		   uint32_t generation)
{
	struct ct_identity key;
	struct seen_entry *slot;
	uint32_t fp;
	int change;

	ct_entry_identity(e, &key);
	if (!key.id)
		return CT_SEEN_SAME;	/* nothing to key it by */
	slot = find(s, &key);
	if (destroyed) {
		if (slot->key.id)
			remove_entry(s, slot);
		return CT_SEEN_SAME;
	}
	fp = fingerprint(e);
	if (!slot->key.id) {
		if ((s->used + 1) * 2 > s->size) {
			if (grow(s))
				return -ENOMEM;
			slot = find(s, &key);
		}
		slot->key = key;
		s->used++;
		change = CT_SEEN_NEW;
	} else {
		change = slot->fingerprint == fp ? CT_SEEN_SAME : CT_SEEN_CHANGED;
	}
	slot->fingerprint = fp;
	slot->generation = generation;
	return change;
}

/*
 * After a resync's dump: take out one entry that the dump of generation
 * did not find, filling out (an empty conntrack object) with its tuple,
 * zone and id. Returns false when there is none left.
 */
bool ct_seen_take_gone(struct ct_seen *s, uint32_t generation, struct nf_conntrack *out)
{
	for (; s->sweep < s->size; s->sweep++) {
		struct seen_entry e = s->slots[s->sweep];
		const struct ct_identity *t = &e.key;
		bool v6 = t->family == AF_INET6;

		if (!t->id || e.generation == generation)
			continue;
		remove_entry(s, &s->slots[s->sweep]);	/* may move a later entry here: look again */
		nfct_set_attr_u8(out, ATTR_ORIG_L3PROTO, t->family);
		nfct_set_attr_u8(out, ATTR_REPL_L3PROTO, t->family);
		nfct_set_attr_u8(out, ATTR_ORIG_L4PROTO, t->proto);
		nfct_set_attr_u8(out, ATTR_REPL_L4PROTO, t->proto);
		nfct_set_attr(out, v6 ? ATTR_ORIG_IPV6_SRC : ATTR_ORIG_IPV4_SRC, t->src);
		nfct_set_attr(out, v6 ? ATTR_ORIG_IPV6_DST : ATTR_ORIG_IPV4_DST, t->dst);
		if (t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6) {
			nfct_set_attr_u8(out, ATTR_ICMP_TYPE, t->icmp_type);
			nfct_set_attr_u8(out, ATTR_ICMP_CODE, t->icmp_code);
			nfct_set_attr_u16(out, ATTR_ICMP_ID, t->sport);
		} else {
			nfct_set_attr_u16(out, ATTR_ORIG_PORT_SRC, t->sport);
			nfct_set_attr_u16(out, ATTR_ORIG_PORT_DST, t->dport);
		}
		if (t->zone)
			nfct_set_attr_u16(out, ATTR_ZONE, t->zone);
		if (t->orig_zone)
			nfct_set_attr_u16(out, ATTR_ORIG_ZONE, t->orig_zone);
		nfct_set_attr_u32(out, ATTR_ID, t->id);
		return true;
	}
	s->sweep = 0;
	return false;
}
