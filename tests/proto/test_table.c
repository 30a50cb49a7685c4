/*
 * The message table (VMM_FRAME_MESSAGES in proto/frame.h) against protoc-c's
 * own description of the protocol: every case of Envelope's oneof has a row
 * with its field name and a direction; the request-id and fd-count columns
 * point at the members the descriptor names; every request a client sends
 * names a reply the daemon sends; and the builders carry what they are
 * given.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "frame.h"

/* The field of message descriptor d at byte offset off, or NULL. */
static const ProtobufCFieldDescriptor *
field_at(const ProtobufCMessageDescriptor *d, size_t off)
{
	unsigned	i;

	for (i = 0; i < d->n_fields; i++)
		if (d->fields[i].offset == off)
			return &d->fields[i];
	return NULL;
}

/* Each oneof case: a row that agrees with the descriptor. */
static void
test_every_case_has_a_row(void)
{
	const ProtobufCMessageDescriptor	*ed = &vmm__envelope__descriptor;
	const ProtobufCMessageDescriptor	*md;
	const ProtobufCFieldDescriptor		*f, *g, *rid;
	const struct vmm_frame_type		*t, *r;
	unsigned				 i, requests = 0;

	for (i = 0; i < ed->n_fields; i++) {
		f = &ed->fields[i];
		/* Every Envelope member is in the oneof. */
		CHECK((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0);
		CHECK(f->type == PROTOBUF_C_TYPE_MESSAGE);
		md = f->descriptor;
		t = vmm_frame_type((Vmm__Envelope__MsgCase)f->id);
		if (t == NULL)
			fprintf(stderr, "no row for Envelope.%s\n", f->name);
		CHECK(t != NULL);
		CHECK(t->msg_case == (Vmm__Envelope__MsgCase)f->id);
		CHECK(t->name != NULL && strcmp(t->name, f->name) == 0);
		CHECK(t->from == VMM_FRAME_FROM_CLIENT ||
		    t->from == VMM_FRAME_FROM_DAEMON ||
		    t->from == VMM_FRAME_FROM_ANY);
		CHECK(t->check != NULL);

		/* A type with a request_id field declares it, where it is. */
		rid = protobuf_c_message_descriptor_get_field_by_name(md,
		    "request_id");
		if (rid != NULL) {
			if (t->rid_offset != rid->offset)
				fprintf(stderr, "%s: request id column\n",
				    t->name);
			CHECK(t->rid_offset == rid->offset);
		}
		if (t->rid_offset != SIZE_MAX) {
			g = field_at(md, t->rid_offset);
			CHECK(g != NULL && g->type == PROTOBUF_C_TYPE_UINT64 &&
			    g->label != PROTOBUF_C_LABEL_REPEATED);
			CHECK(strcmp(g->name, "request_id") == 0 ||
			    (t->msg_case == VMM__ENVELOPE__MSG_RECALL &&
			    strcmp(g->name, "recall_id") == 0));
		}
		/* The fd count is a repeated field's count. */
		if (t->fds_offset != SIZE_MAX) {
			unsigned j;

			for (j = 0; j < md->n_fields; j++) {
				g = &md->fields[j];
				if (g->label == PROTOBUF_C_LABEL_REPEATED &&
				    g->quantifier_offset == t->fds_offset)
					break;
			}
			CHECK(j < md->n_fields);
		}
		/* A request is the client's, with an id, and its reply is
		 * the daemon's, echoing it. */
		if (t->reply != VMM__ENVELOPE__MSG__NOT_SET) {
			requests++;
			CHECK(t->from == VMM_FRAME_FROM_CLIENT);
			CHECK(t->rid_offset != SIZE_MAX);
			CHECK((r = vmm_frame_type(t->reply)) != NULL);
			CHECK(r->from == VMM_FRAME_FROM_DAEMON);
			CHECK(r->rid_offset != SIZE_MAX);
			CHECK(r->reply == VMM__ENVELOPE__MSG__NOT_SET);
		}
		/* Everything a client sends with a request id is a request:
		 * a forgotten reply column would leave callers waiting. */
		if (t->from == VMM_FRAME_FROM_CLIENT && t->rid_offset != SIZE_MAX)
			CHECK(t->reply != VMM__ENVELOPE__MSG__NOT_SET);
	}
	CHECK(requests >= 10);

	/* No row for a case the descriptor does not have. */
	for (i = 0; i < 256; i++)
		if (vmm_frame_type((Vmm__Envelope__MsgCase)i) != NULL)
			CHECK(protobuf_c_message_descriptor_get_field(ed, i) !=
			    NULL);
	CHECK(vmm_frame_type(VMM__ENVELOPE__MSG__NOT_SET) == NULL);
}

/* Builders, and the id and fd columns read through an envelope. */
static void
test_builders(void)
{
	Vmm__Acquire	 a = VMM__ACQUIRE__INIT;
	Vmm__Grant	 g = VMM__GRANT__INIT;
	Vmm__Recall	 rc = VMM__RECALL__INIT;
	Vmm__Goodbye	 bye = VMM__GOODBYE__INIT;
	Vmm__Chunk	 c = VMM__CHUNK__INIT, *cp[1] = { &c };
	Vmm__Envelope	 env;

	a.bytes = 4096;
	env = vmm_frame_env_acquire(&a);
	CHECK(env.msg_case == VMM__ENVELOPE__MSG_ACQUIRE && env.acquire == &a);
	CHECK(env.base.descriptor == &vmm__envelope__descriptor);
	CHECK(vmm_frame_request_id(&env) == 0);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_CLIENT, 0) ==
	    VMM_FRAME_EINVALID);		/* no request id yet */
	CHECK(vmm_frame_set_request_id(&env, 7) == 0);
	CHECK(a.request_id == 7 && vmm_frame_request_id(&env) == 7);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_CLIENT, 0) == 0);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_DAEMON, 0) ==
	    VMM_FRAME_EINVALID);		/* wrong direction */
	CHECK(strcmp(vmm_frame_type_name(&env), "acquire") == 0);

	c.id = 1;
	c.size = 2 << 20;
	g.request_id = 7;
	g.n_chunks = 1;
	g.chunks = cp;
	env = vmm_frame_env_grant(&g);
	CHECK(vmm_frame_expected_fds(&env) == 1);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_DAEMON, 0) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_DAEMON, 1) == 0);

	rc.recall_id = 9;
	env = vmm_frame_env_recall(&rc);
	CHECK(vmm_frame_request_id(&env) == 9);

	env = vmm_frame_env_goodbye(&bye);
	CHECK(vmm_frame_set_request_id(&env, 3) == -1);
	CHECK(vmm_frame_request_id(&env) == 0);

	/* A case with a NULL message is no message. */
	env = vmm_frame_env_acquire(NULL);
	CHECK(vmm_frame_request_id(&env) == 0);
	CHECK(vmm_frame_set_request_id(&env, 1) == -1);
	CHECK(vmm_frame_validate(&env, VMM_FRAME_PEER_CLIENT, 0) ==
	    VMM_FRAME_EINVALID);
}

int
main(void)
{
	test_every_case_has_a_row();
	test_builders();
	return 0;
}
