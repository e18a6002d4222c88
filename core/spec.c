/*
 * A Lua table of fields turned into a conntrack object: the tuple of get,
 * the entry of create, the changes of update. Fields are applied in
 * ct_fields[] order, so family and proto are known before ports and states.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
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

/* One pass over the fields of the spec: those in the reply tuple, or the others. */
static void apply(const struct ct_arg *a, int idx, unsigned need, bool reply,
		  struct nf_conntrack *ct, uint8_t *family)
{
	lua_State *L = a->L;

	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];
		struct ct_value val;

		if (!(f->flags & need) || !(f->flags & F_REPLY) != !reply)
			continue;
		if (lua_getfield(L, idx, f->name) == LUA_TNIL) {
			lua_pop(L, 1);
			continue;
		}
		ct_field_parse(a, f, -1, &val);
		lua_pop(L, 1);
		if (f->kind == K_FAMILY || f->kind == K_ADDR) {
			uint8_t fam = f->kind == K_FAMILY ? (uint8_t)val.v.num : val.family;

			if (*family && *family != fam)
				spec_error(a, "field '%s' mixes IPv4 and IPv6", f->name);
			*family = fam;
		}
		if (!ct_field_applies(f, ct))
			spec_error(a, "field '%s' does not apply to this protocol", f->name);
		if (ct_field_store(f, &val, ct, NULL) != 0)
			spec_error(a, "field 'state': not a state of this protocol", f->name);
	}
}

/* The tuple of one direction is complete when its addresses and layer-4 ids are set. */
static const char *missing_tuple_field(const struct nf_conntrack *ct, bool reply)
{
	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];

		if (!(f->flags & F_TUPLE) || !(f->flags & F_REPLY) != !reply ||
		    f->kind == K_U16 || f->kind == K_FAMILY)	/* zones and family are optional */
			continue;
		if (ct_field_applies(f, ct) && !ct_field_present(f, ct))
			return f->name;
	}
	return NULL;
}

/*
 * Fill ct from the table at idx. For create (F_CREATE) the reply tuple is
 * the inverse of the original one unless the spec overrides parts of it,
 * as for a NAT entry. For get (F_TUPLE) one complete direction is enough.
 */
void ct_spec_build(const struct ct_arg *a, int idx, unsigned need, struct nf_conntrack *ct)
{
	uint8_t family = 0;
	const char *missing;

	idx = lua_absindex(a->L, idx);
	luaL_checktype(a->L, a->arg, LUA_TTABLE);
	check_keys(a, idx, need);
	apply(a, idx, need, false, ct, &family);
	if (need & F_CREATE) {
		if (!nfct_attr_is_set(ct, ATTR_ORIG_L4PROTO))
			spec_error(a, "field '%s' is required", "proto");
		if (!nfct_attr_is_set(ct, ATTR_TIMEOUT))
			spec_error(a, "field '%s' is required", "timeout");
		nfct_setobjopt(ct, NFCT_SOPT_SETUP_REPLY);
	}
	apply(a, idx, need, true, ct, &family);
	missing = missing_tuple_field(ct, false);
	if (missing && (need & F_CREATE || missing_tuple_field(ct, true)))
		spec_error(a, "field '%s' is required", missing);
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
