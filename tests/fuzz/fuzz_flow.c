// SPDX-License-Identifier: MIT
// libFuzzer target for core/flow.c: flow_decode() of any bytes never crashes and only FLOW_OK
// writes its output; the first 10 bytes also pick a flow that must survive encode then decode.
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/flow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct flow_keys keys;
    static int ready;
    char tok[FLOW_TOKEN_LEN];
    struct flow in = {0}, out;

    if (!ready) {
        memset(&keys, 0, sizeof(keys)); /* fixed keys: a crash reproduces */
        memset(keys.cur.secret, 0x5a, sizeof(keys.cur.secret));
        memset(keys.prev.secret, 0xa5, sizeof(keys.prev.secret));
        keys.has_prev = true;
        ready = 1;
    }

    memset(&out, 0xee, sizeof(out));
    enum flow_result r = flow_decode(&keys, slice_make((const char *)data, size), &out);
    assert(r == FLOW_OK || r == FLOW_FORGED || r == FLOW_MALFORMED);
    if (r != FLOW_OK)
        assert(out.worker == 0xeeee && out.slot == 0xeeeeeeee && out.gen == 0xeeeeeeee);
    else
        assert(size == FLOW_TOKEN_LEN);

    if (size >= 10) {
        in.worker = (uint16_t)(data[0] << 8 | data[1]);
        memcpy(&in.slot, data + 2, 4);
        memcpy(&in.gen, data + 6, 4);
        const struct flow_key *k = (data[0] & 1) ? &keys.cur : &keys.prev;
        assert(flow_encode(k, &in, tok, sizeof(tok)) == (ssize_t)FLOW_TOKEN_LEN);
        assert(flow_decode(&keys, slice_make(tok, sizeof(tok)), &out) == FLOW_OK);
        assert(out.worker == in.worker && out.slot == in.slot && out.gen == in.gen);
    }
    return 0;
}
