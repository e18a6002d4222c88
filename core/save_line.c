/*
 * Lines of conntrack's save format read straight into a create spec, with
 * no Lua table between (h:create of a line, h:restore of a text of them,
 * conntrack.save_lines finding a run of them in a text): what makes
 * `ct-lua conntrack -R` of a saved table fast. The grammar is what
 * `conntrack -L -o save` prints (ct-lua's -o save too), with the command
 * -I or -A, in that order:
 *
 *   -I|-A -t TIMEOUT [-u STATUS[,STATUS...]] [-w ZONE] [--orig-zone ZONE]
 *         [--reply-zone ZONE] -s ADDR -d ADDR -r|-g ADDR -q|-n ADDR -p PROTO OPTIONS
 *
 *   tcp:          --sport P --dport P --reply-port-src P --reply-port-dst P --state S
 *   udp, udplite: the four ports
 *   sctp:         the four ports --state S --orig-vtag T --reply-vtag T
 *   gre:          --srckey K --dstkey K --reply-key-src K --reply-key-dst K
 *   icmp:         --icmp-type N --icmp-code N --icmp-id N (icmpv6: --icmpv6-...)
 *
 * Words are separated by spaces and tabs, and shorter than -R's 1024 bytes
 * (a line at most its 10239); numbers are decimal with no sign and no
 * leading zero, within their field; addresses are literal and of one
 * family. A line outside this grammar is declined, not refused: conntrack's
 * command line says much more, and its parser (lua/conntrack/cli/parse.lua)
 * gives any line its meaning or its error. A line read here means what that
 * parser and cli/create.lua make of it, field for field (the same
 * truncations, the swapped SCTP tags, the TCP window flags that conntrack's
 * tcp handler sets); tests/save_line_spec.lua checks that on random lines.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#define PARAM_MAX 1024	/* conntrack -R refuses a word this long ("Parameter too long!") */
#define PIECE_MAX 10239	/* -R reads longer lines in pieces (fgets into 10240 bytes) */
#define QUOTED_MAX 120	/* of a line an error quotes */

/* The protocol options of a save line, by protocol. */
enum options { OPT_PORTS, OPT_TCP, OPT_SCTP, OPT_GRE, OPT_ICMP, OPT_ICMPV6 };

static const struct {
	const char *name;
	uint8_t num;
	enum options options;
} protocols[] = {
	{ "tcp", IPPROTO_TCP, OPT_TCP }, { "udp", IPPROTO_UDP, OPT_PORTS },
	{ "udplite", IPPROTO_UDPLITE, OPT_PORTS }, { "sctp", IPPROTO_SCTP, OPT_SCTP },
	{ "gre", IPPROTO_GRE, OPT_GRE }, { "icmp", IPPROTO_ICMP, OPT_ICMP },
	{ "icmpv6", IPPROTO_ICMPV6, OPT_ICMPV6 },
};

/* The states conntrack 1.4.7's handlers know (the kernel knows more). */
static const char *const tcp_states[] = {
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
	"TIME_WAIT", "CLOSE", "SYN_SENT2", NULL
};
static const char *const sctp_states[] = {
	"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT",
	"SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", NULL
};
/* conntrack's tcp handler lets an entry in these states reopen (CLOSE_INIT) */
static const char *const reopening_states[] = { "TIME_WAIT", "CLOSE", "SYN_SENT2", NULL };

static const struct {
	const char *name;
	uint32_t bit;
} status_names[] = {
	{ "ASSURED", IPS_ASSURED }, { "SEEN_REPLY", IPS_SEEN_REPLY }, { "UNSET", 0 },
	{ "FIXED_TIMEOUT", IPS_FIXED_TIMEOUT }, { "EXPECTED", IPS_EXPECTED },
	{ "OFFLOAD", IPS_OFFLOAD }, { "HW_OFFLOAD", IPS_HW_OFFLOAD },
};

/* The line's words, one at a time: word is the next one (len 0 at the end
 * of the line), value the value of the option just read. */
struct reader {
	const char *p, *end;
	const char *word, *value;
	size_t len, vlen;
	bool bad;	/* a character or an option outside the grammar: declined */
};

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Reads the next word. A character that conntrack's -R splits otherwise
 * (quotes, other blanks, NUL) or that no word of the grammar has is bad,
 * and so is a word that -R refuses for its length. */
static void next_word(struct reader *r)
{
	const char *p = r->p, *end = r->end, *start;

	while (p < end && blank(*p))
		p++;
	start = p;
	/* printable, not a blank and not a quote: '!'..'~' but '"' */
	while (p < end && (unsigned char)(*p - '!') <= '~' - '!' && *p != '"')
		p++;
	if (p < end && !blank(*p) && *p != '\n')
		r->bad = true;
	r->p = p;
	r->word = start;
	r->len = (size_t)(p - start);
	if (r->len >= PARAM_MAX)
		r->bad = true;
}

/* Whether the len bytes at s are the string word. */
static bool same(const char *s, size_t len, const char *word)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != word[i])	/* (stops at word's NUL, which s has not) */
			return false;
	return word[len] == '\0';
}

/* The end of the line, after its last word: nothing but blanks and one newline. */
static bool at_end(const struct reader *r)
{
	return r->len == 0 && !r->bad && (r->p == r->end || (*r->p == '\n' && r->p + 1 == r->end));
}

/* Whether the next word is option; its value is then read. An option
 * without a value is bad. */
static bool option(struct reader *r, const char *option)
{
	if (!same(r->word, r->len, option))
		return false;
	next_word(r);
	r->value = r->word;
	r->vlen = r->len;
	next_word(r);
	if (r->vlen > 0)
		return true;
	r->bad = true;
	return false;
}

static bool known(const char *const *names, const char *s, size_t len)
{
	for (size_t i = 0; names[i]; i++)
		if (same(s, len, names[i]))
			return true;
	return false;
}

static struct ct_value *give(struct ct_spec *spec, enum ct_field_id field)
{
	struct ct_value *val = &spec->values[field];

	/* str, most of the value, is read only for strings and states */
	memset(val, 0, offsetof(struct ct_value, str));
	val->str[0] = '\0';
	spec->given |= UINT64_C(1) << field;
	return val;
}

/* The option's value into field as a decimal number of at most max. */
static bool number(const struct reader *r, uint64_t max, struct ct_spec *spec,
		   enum ct_field_id field)
{
	uint64_t n = 0;

	if (r->vlen > 10 || (r->value[0] == '0' && r->vlen > 1))
		return false;
	for (size_t i = 0; i < r->vlen; i++) {
		if (r->value[i] < '0' || r->value[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(r->value[i] - '0');
	}
	if (n > max)
		return false;
	give(spec, field)->v.num = n;
	return true;
}

/* The option name and its number, next on the line. */
static bool number_option(struct reader *r, const char *name, uint64_t max,
			  struct ct_spec *spec, enum ct_field_id field)
{
	return option(r, name) && number(r, max, spec, field);
}

/* The same when the line has it here; true when it has not. */
static bool optional_number(struct reader *r, const char *name, uint64_t max,
			    struct ct_spec *spec, enum ct_field_id field)
{
	return !option(r, name) || number(r, max, spec, field);
}

/* -u: status names, comma-separated. */
static bool status_option(const struct reader *r, struct ct_spec *spec)
{
	const size_t names = sizeof(status_names) / sizeof(status_names[0]);
	const char *name = r->value, *end = r->value + r->vlen;
	uint32_t bits = 0;
	struct ct_value *val;

	for (;;) {
		const char *comma = memchr(name, ',', (size_t)(end - name));
		size_t len = (size_t)((comma ? comma : end) - name), i = 0;

		while (i < names && !same(name, len, status_names[i].name))
			i++;
		if (i == names)
			return false;
		bits |= status_names[i].bit;
		if (!comma)
			break;
		name = comma + 1;
	}
	val = give(spec, CT_F_STATUS);
	val->v.num = val->mask.num = bits;
	return true;
}

/* An address option into field (an address, or a NAT target without a port): false
 * when the line has no such option here, or bad when its address is none or of
 * another family than the line's (*family once known). */
static bool address_option(struct reader *r, const char *name, struct ct_spec *spec,
			   enum ct_field_id field, uint8_t *family)
{
	struct ct_value val = { 0 };

	if (!option(r, name))
		return false;
	if (!ct_address_parse(r->value, r->vlen, &val) || (*family && *family != val.family)) {
		r->bad = true;
		return false;
	}
	*family = val.family;
	*give(spec, field) = val;
	return true;
}

/*
 * The reply tuple's addresses, -r and -q, or in their place the NAT targets
 * that conntrack -o save writes for a NATed entry, -g and -n, with which
 * conntrack -I has the kernel set up the NAT. As conntrack's template is
 * sent, once one reply address is given the other is the family's zero
 * address if not, and with neither there is no reply tuple (*reply false:
 * the reply ports or keys given are not sent either).
 */
static bool reply_addresses(struct reader *r, struct ct_spec *spec, uint8_t *family,
			    bool *reply)
{
	bool src, dst;

	src = address_option(r, "-r", spec, CT_F_REPLY_SRC, family);
	if (!src && !address_option(r, "-g", spec, CT_F_DNAT, family))
		return false;
	dst = address_option(r, "-q", spec, CT_F_REPLY_DST, family);
	if (!dst && !address_option(r, "-n", spec, CT_F_SNAT, family))
		return false;
	if (src != dst)
		give(spec, src ? CT_F_REPLY_DST : CT_F_REPLY_SRC)->family = *family;
	*reply = src || dst;
	return true;
}

/* The reply tuple's ids (ports, keys) out of the spec. */
static void drop_reply_ids(struct ct_spec *spec)
{
	static const enum ct_field_id ids[] = {
		CT_F_REPLY_SPORT, CT_F_REPLY_DPORT, CT_F_REPLY_SRCKEY, CT_F_REPLY_DSTKEY
	};

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		spec->given &= ~(UINT64_C(1) << ids[i]);
}

static bool state_option(struct reader *r, const char *const *states, struct ct_spec *spec)
{
	char *str;

	if (!option(r, "--state") || !known(states, r->value, r->vlen))
		return false;
	str = give(spec, CT_F_STATE)->str;
	memcpy(str, r->value, r->vlen);	/* a known state: far shorter than str */
	str[r->vlen] = '\0';
	return true;
}

static bool ports(struct reader *r, struct ct_spec *spec)
{
	return number_option(r, "--sport", UINT16_MAX, spec, CT_F_SPORT) &&
	       number_option(r, "--dport", UINT16_MAX, spec, CT_F_DPORT) &&
	       number_option(r, "--reply-port-src", UINT16_MAX, spec, CT_F_REPLY_SPORT) &&
	       number_option(r, "--reply-port-dst", UINT16_MAX, spec, CT_F_REPLY_DPORT);
}

/* The window tracking flags of both directions: tracking off, so that an
 * entry made by hand passes real packets, and reopening allowed from the
 * states that close. */
static void window_flags(struct ct_spec *spec)
{
	uint64_t flags = IP_CT_TCP_FLAG_BE_LIBERAL | IP_CT_TCP_FLAG_SACK_PERM;
	const char *state = spec->values[CT_F_STATE].str;
	struct ct_value *val;

	if (known(reopening_states, state, strlen(state)))
		flags |= IP_CT_TCP_FLAG_CLOSE_INIT;
	val = give(spec, CT_F_TCP_FLAGS);
	val->v.num = val->mask.num = flags;
	val->has_mask = true;
	spec->values[CT_F_REPLY_TCP_FLAGS] = *val;
	spec->given |= UINT64_C(1) << CT_F_REPLY_TCP_FLAGS;
}

/* conntrack byte-swaps a tag it is given (htonl on a value libnfct swaps again) */
static bool vtag_option(struct reader *r, const char *name, struct ct_spec *spec,
			enum ct_field_id field)
{
	if (!number_option(r, name, UINT32_MAX, spec, field))
		return false;
	spec->values[field].v.num = __builtin_bswap32((uint32_t)spec->values[field].v.num);
	return true;
}

static bool icmp(struct reader *r, const char *type, const char *code, const char *id,
		 struct ct_spec *spec)
{
	return number_option(r, type, UINT8_MAX, spec, CT_F_ICMP_TYPE) &&
	       number_option(r, code, UINT8_MAX, spec, CT_F_ICMP_CODE) &&
	       number_option(r, id, UINT16_MAX, spec, CT_F_ICMP_ID);
}

static bool protocol_options(struct reader *r, enum options options, struct ct_spec *spec)
{
	switch (options) {
	case OPT_PORTS:
		return ports(r, spec);
	case OPT_TCP:
		if (!ports(r, spec) || !state_option(r, tcp_states, spec))
			return false;
		window_flags(spec);
		return true;
	case OPT_SCTP:
		return ports(r, spec) && state_option(r, sctp_states, spec) &&
		       vtag_option(r, "--orig-vtag", spec, CT_F_VTAG) &&
		       vtag_option(r, "--reply-vtag", spec, CT_F_REPLY_VTAG);
	case OPT_GRE:
		return number_option(r, "--srckey", UINT16_MAX, spec, CT_F_SRCKEY) &&
		       number_option(r, "--dstkey", UINT16_MAX, spec, CT_F_DSTKEY) &&
		       number_option(r, "--reply-key-src", UINT16_MAX, spec, CT_F_REPLY_SRCKEY) &&
		       number_option(r, "--reply-key-dst", UINT16_MAX, spec, CT_F_REPLY_DSTKEY);
	case OPT_ICMP:
		return icmp(r, "--icmp-type", "--icmp-code", "--icmp-id", spec);
	case OPT_ICMPV6:
		return icmp(r, "--icmpv6-type", "--icmpv6-code", "--icmpv6-id", spec);
	}
	return false;
}

static bool protocol(struct reader *r, struct ct_spec *spec)
{
	if (!option(r, "-p"))
		return false;
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (same(r->value, r->vlen, protocols[i].name)) {
			give(spec, CT_F_PROTO)->v.num = protocols[i].num;
			return protocol_options(r, protocols[i].options, spec);
		}
	return false;
}

char ct_save_line_read(const char *line, size_t len, struct ct_spec *spec)
{
	struct reader r = { line, line + len, NULL, NULL, 0, 0, false };
	uint8_t family = 0;
	bool reply;
	char command;

	spec->given = 0;
	if (len > PIECE_MAX)
		return 0;
	next_word(&r);
	if (!same(r.word, r.len, "-I") && !same(r.word, r.len, "-A"))
		return 0;
	command = r.word[1];
	next_word(&r);
	if (!number_option(&r, "-t", UINT32_MAX, spec, CT_F_TIMEOUT) ||
	    (option(&r, "-u") && !status_option(&r, spec)) ||
	    !optional_number(&r, "-w", UINT16_MAX, spec, CT_F_ZONE) ||
	    !optional_number(&r, "--orig-zone", UINT16_MAX, spec, CT_F_ORIG_ZONE) ||
	    !optional_number(&r, "--reply-zone", UINT16_MAX, spec, CT_F_REPLY_ZONE) ||
	    !address_option(&r, "-s", spec, CT_F_SRC, &family) ||
	    !address_option(&r, "-d", spec, CT_F_DST, &family) ||
	    !reply_addresses(&r, spec, &family, &reply) ||
	    !protocol(&r, spec) || r.bad || !at_end(&r))
		return 0;
	if (!reply)
		drop_reply_ids(spec);
	return command;
}

/* Fill ct from the save line at idx, raising when the line is outside the
 * grammar (quoting its start) or its spec is refused. */
void ct_save_line_build(const struct ct_arg *a, int idx, struct nf_conntrack *ct)
{
	lua_State *L = a->L;
	struct ct_spec spec;
	size_t len;
	const char *line = lua_tolstring(L, idx, &len);
	const char *err, *name;

	if (!ct_save_line_read(line, len, &spec)) {
		lua_pushlstring(L, line, len < QUOTED_MAX ? len : QUOTED_MAX);
		luaL_argerror(L, a->arg, lua_pushfstring(L, "not a line of conntrack's save format "
							 "(-I or -A, as conntrack -L -o save "
							 "prints): '%s%s'", lua_tostring(L, -1),
							 len > QUOTED_MAX ? "..." : ""));
	}
	err = ct_spec_apply(&spec, F_CREATE, ct, &name);
	if (err)
		luaL_argerror(L, a->arg, lua_pushfstring(L, err, name));
}

/* The line at p: its length without the newline, and *next the start of the line after it. */
static size_t line_at(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	*next = nl ? nl + 1 : end;
	return (size_t)((nl ? nl : end) - p);
}

void ct_save_text_init(struct ct_save_text *t, const char *text, size_t len)
{
	t->p = text;
	t->end = text + len;
	t->number = 0;
}

bool ct_save_text_next(struct ct_save_text *t, const char **line, size_t *len)
{
	while (t->p < t->end) {
		const char *start = t->p, *first = start;

		*len = line_at(start, t->end, &t->p);
		t->number++;
		while (first < start + *len && blank(*first))
			first++;
		if (first < start + *len && *first != '#') {
			*line = start;
			return true;
		}
	}
	return false;
}

/* conntrack.save_command(line) -> "-I" | "-A" | nil: the command of a line
 * that h:create takes (the grammar above), or nil for any other line. */
static int save_command(lua_State *L)
{
	struct ct_spec spec;
	size_t len;
	const char *line = luaL_checklstring(L, 1, &len);
	char command = ct_save_line_read(line, len, &spec);

	if (!command)
		lua_pushnil(L);
	else
		lua_pushstring(L, command == 'I' ? "-I" : "-A");
	return 1;
}

/*
 * conntrack.save_lines(text[, init]) -> count, next: how many lines of text
 * from position init on are lines that h:create takes, each ended by a
 * newline, and the position of the line after them. A reader of a large
 * file skips them with one call, where save_command would take one a line.
 */
static int save_lines(lua_State *L)
{
	struct ct_spec spec;
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	lua_Integer init = luaL_optinteger(L, 2, 1);
	const char *p, *end = text + len, *next;
	lua_Integer count = 0;

	luaL_argcheck(L, init >= 1 && (size_t)init <= len + 1, 2, "out of the text");
	for (p = text + init - 1; p < end; p = next) {
		size_t n = line_at(p, end, &next);

		if (p + n == end)
			break;	/* a last line without a newline: maybe only a part of one */
		if (!ct_save_line_read(p, n + 1, &spec))
			break;
		count++;
	}
	lua_pushinteger(L, count);
	lua_pushinteger(L, p - text + 1);
	return 2;
}

void ct_save_line_open(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{ "save_command", save_command },
		{ "save_lines", save_lines },
		{ NULL, NULL }
	};

	luaL_setfuncs(L, functions, 0);
}
