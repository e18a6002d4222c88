/*
 * A spec of fields turned into a conntrack object: the tuple of get, the
 * entry of create, the changes of update. A spec comes from a Lua table or
 * (save_line.c) a line of conntrack's save format. Fields are applied in
 * ct_fields[] order, so family and proto are known before ports and states.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* Every key of the table at idx must name a field that has one of the need flags. */
static void check_keys(const struct ct_arg *a, int idx, unsigned need)
{
	lua_State *L = a->L;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		ct_field_check(a, -1, need);
	}
}

static void spec_error(const struct ct_arg *a, const char *fmt, const char *name)
{
	luaL_argerror(a->L, a->arg, lua_pushfstring(a->L, fmt, name));
}

/*
 * Where a build takes its values: a spec filled already (a save line), or
 * the table at idx, read field by field as the build reaches it, so that
 * of several faults the first in field order is the one raised (a value
 * that does not parse, or one that does not fit the fields before it).
 */
struct source {
	struct ct_spec *spec;
	const struct ct_arg *a;		/* NULL: spec is filled */
	int idx;
	unsigned need;			/* the uses of the fields read from the table */
};

/* Whether the source gives field i. */
static bool given(struct source *src, size_t i)
{
	uint64_t bit = UINT64_C(1) << i;

	if (src->a && (ct_fields[i].flags & src->need)) {
		lua_State *L = src->a->L;

		if (lua_getfield(L, src->idx, ct_fields[i].name) != LUA_TNIL) {
			ct_field_parse(src->a, &ct_fields[i], -1, &src->spec->values[i]);
			src->spec->given |= bit;
		}
		lua_pop(L, 1);
	}
	return (src->spec->given & bit) != 0;
}

/*
 * One pass over the given fields: those in the reply tuple, or the others.
 * Returns NULL, or what is wrong as a format naming the field (*name).
 */
static const char *apply(struct source *src, bool reply, struct nf_conntrack *ct,
			 uint8_t *family, const char **name)
{
	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];
		const struct ct_value *val = &src->spec->values[i];

		if (!(f->flags & F_REPLY) != !reply || !given(src, i))
			continue;
		*name = f->name;
		if (f->kind == K_FAMILY || f->kind == K_ADDR || f->kind == K_NAT) {
			uint8_t fam = f->kind == K_FAMILY ? (uint8_t)val->v.num : val->family;

			if (*family && *family != fam)
				return "field '%s' mixes IPv4 and IPv6";
			*family = fam;
		}
		if (!nfct_attr_is_set(ct, ATTR_ORIG_L4PROTO) && f->scope != S_ANY)
			return "field 'proto' is required with field '%s'";
		if (!ct_field_applies(f, CT_ENTRY_OF(ct)))
			return "field '%s' does not apply to this protocol";
		if (ct_field_store(f, val, ct, NULL) != 0)
			return "field 'state': not a state of this protocol";
	}
	return NULL;
}

/* The tuple of one direction is complete when its addresses and layer-4 ids are set. */
static const char *missing_tuple_field(const struct nf_conntrack *ct, bool reply)
{
	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];

		if (!(f->flags & F_TUPLE) || !(f->flags & F_REPLY) != !reply ||
		    f->kind == K_U16 || f->kind == K_FAMILY)	/* zones and family are optional */
			continue;
		if (ct_field_applies(f, CT_ENTRY_OF(ct)) && !ct_field_present(f, CT_ENTRY_OF(ct)))
			return f->name;
	}
	return NULL;
}

/*
 * Look an entry up by its reply tuple. libnetfilter_conntrack always sends
 * an original tuple, and the kernel hashes both directions of an entry, so
 * the reply values go in the original tuple's place (reply_zone becoming
 * the zone of the lookup).
 */
static void lookup_by_reply(struct nf_conntrack *ct)
{
	static const int moves[][2] = {
		{ ATTR_REPL_IPV4_SRC, ATTR_ORIG_IPV4_SRC }, { ATTR_REPL_IPV4_DST, ATTR_ORIG_IPV4_DST },
		{ ATTR_REPL_IPV6_SRC, ATTR_ORIG_IPV6_SRC }, { ATTR_REPL_IPV6_DST, ATTR_ORIG_IPV6_DST },
		{ ATTR_REPL_PORT_SRC, ATTR_ORIG_PORT_SRC }, { ATTR_REPL_PORT_DST, ATTR_ORIG_PORT_DST },
		{ ATTR_REPL_ZONE, ATTR_ZONE },
	};

	for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
		enum nf_conntrack_attr from = (enum nf_conntrack_attr)moves[i][0];
		enum nf_conntrack_attr to = (enum nf_conntrack_attr)moves[i][1];

		nfct_attr_unset(ct, to);
		if (nfct_attr_is_set(ct, from)) {
			nfct_set_attr(ct, to, nfct_get_attr(ct, from));
			nfct_attr_unset(ct, from);
		}
	}
}

/*
 * Fill ct from the source. For create (F_CREATE) the original tuple must be
 * complete and the reply tuple is its inverse unless the spec overrides
 * parts of it, as for a NAT entry. For get (F_TUPLE) one complete
 * direction is enough. Returns NULL, or what is wrong as a format naming
 * a field (*name).
 */
static const char *build(struct source *src, unsigned need, struct nf_conntrack *ct,
			 const char **name)
{
	uint8_t family = 0;
	const char *missing, *err;

	err = apply(src, false, ct, &family, name);
	if (err)
		return err;
	missing = missing_tuple_field(ct, false);
	if (need & F_CREATE) {
		*name = missing ? missing : "timeout";
		if (missing || !nfct_attr_is_set(ct, ATTR_TIMEOUT))
			return "field '%s' is required";
		nfct_setobjopt(ct, NFCT_SOPT_SETUP_REPLY);
	}
	err = apply(src, true, ct, &family, name);
	if (err)
		return err;
	if (!(need & F_CREATE) && missing) {
		*name = missing;
		if (missing_tuple_field(ct, true))
			return "field '%s' is required";
		lookup_by_reply(ct);
	}
	return NULL;
}

/* Fill ct from spec (build); NULL, or what is wrong. */
const char *ct_spec_apply(struct ct_spec *spec, unsigned need, struct nf_conntrack *ct,
			  const char **name)
{
	struct source src = { spec, NULL, 0, need };

	return build(&src, need, ct, name);
}

/* Fill ct from the table at idx (build), or for create from a line of
 * conntrack's save format, raising what is wrong. */
void ct_spec_build(const struct ct_arg *a, int idx, unsigned need, struct nf_conntrack *ct)
{
	struct ct_spec spec;
	struct source src = { &spec, a, 0, need };
	const char *err, *name;

	idx = lua_absindex(a->L, idx);
	if ((need & F_CREATE) && lua_type(a->L, idx) == LUA_TSTRING) {
		ct_save_line_build(a, idx, ct);
		return;
	}
	luaL_checktype(a->L, a->arg, LUA_TTABLE);
	check_keys(a, idx, need);
	spec.given = 0;
	src.idx = idx;
	err = build(&src, need, ct, &name);
	if (err)
		spec_error(a, err, name);
}

/*
 * Copy what names entry in a request: its original tuple and zones, and
 * for a delete its id, so that an entry recreated meanwhile with the same
 * tuple is not the one deleted.
 */
void ct_spec_identity(struct nf_conntrack *req, const struct nf_conntrack *entry, bool with_id)
{
	static const int identity[] = { ATTR_ZONE, ATTR_ORIG_ZONE, ATTR_ID };

	nfct_copy(req, entry, NFCT_CP_ORIG);
	for (size_t i = 0; i < sizeof(identity) / sizeof(identity[0]); i++)
		if ((identity[i] != ATTR_ID || with_id) && nfct_attr_is_set(entry, identity[i]))
			nfct_copy_attr(req, entry, identity[i]);
}

/*
 * The kernel changes an SCTP entry's state and verification tags only all
 * three at once (EINVAL otherwise): a change of some takes the others from
 * the entry.
 */
void ct_spec_complete(struct nf_conntrack *req, const struct nf_conntrack *entry)
{
	static const enum nf_conntrack_attr sctp[] = {
		ATTR_SCTP_STATE, ATTR_SCTP_VTAG_ORIG, ATTR_SCTP_VTAG_REPL
	};
	const size_t n = sizeof(sctp) / sizeof(sctp[0]);
	bool changed = false;

	if (nfct_get_attr_u8(entry, ATTR_ORIG_L4PROTO) != IPPROTO_SCTP)
		return;
	for (size_t i = 0; i < n; i++)
		changed |= nfct_attr_is_set(req, sctp[i]) > 0;
	for (size_t i = 0; changed && i < n; i++)
		if (!nfct_attr_is_set(req, sctp[i]) && nfct_attr_is_set(entry, sctp[i]) > 0)
			nfct_copy_attr(req, entry, sctp[i]);
}

/* Parse the changes of update into vals[]/fields[]; *n receives their number. */
void ct_spec_changes(const struct ct_arg *a, int idx, struct ct_change *changes, size_t *n)
{
	lua_State *L = a->L;

	idx = lua_absindex(L, idx);
	luaL_checktype(L, a->arg, LUA_TTABLE);
	*n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const struct ct_field *f = ct_field_check(a, -2, F_CHANGE);

		changes[*n].field = f;
		ct_field_parse(a, f, -1, &changes[*n].value);
		(*n)++;
		lua_pop(L, 1);
	}
	if (*n == 0)
		luaL_argerror(L, a->arg, "no changes given");
}
