// SPDX-License-Identifier: GPL-2.0
/*
 * Per-socket TCP timers of a node, stretched by the node's TDF.
 *
 * Attached as a sock_ops program to the node's cgroup2 directory, it runs for every TCP
 * socket the node's processes create (and the sockets accepted from their listeners):
 * - BPF_SOCK_OPS_TIMEOUT_INIT: the initial RTO (SYN and SYN-ACK retransmission timer, 1 s)
 *   becomes TDF seconds;
 * - on connect and establishment it asks the kernel for the delayed-ACK maximum and the
 *   minimum RTO stretched by the TDF (TCP_BPF_DELACK_MAX, TCP_BPF_RTO_MIN). The kernel only
 *   accepts values at or below its defaults (200 ms each), so at TDF > 1 these are refused;
 *   every outcome is counted in `outcomes` so the loader reports what happened;
 * - optionally, it switches every socket to a named congestion control (on connect, and on
 *   passive establishment), for processes whose namespace default cannot be set.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#ifndef SOL_TCP
#define SOL_TCP 6
#endif
#ifndef TCP_CONGESTION
#define TCP_CONGESTION 13
#endif
#ifndef TCP_BPF_DELACK_MAX
#define TCP_BPF_DELACK_MAX 1003
#endif
#ifndef TCP_BPF_RTO_MIN
#define TCP_BPF_RTO_MIN 1004
#endif

/* TDF × 1000, set by the loader before the object is loaded. */
const volatile __u32 tdf_milli = 1000;
/* Congestion control every socket is switched to ("" = leave the namespace default). */
const volatile char cc_name[16] = {};
/* The kernel's tick rate (libbpf reads it from the kernel config); 0 when unknown. */
extern unsigned int CONFIG_HZ __kconfig __weak;

/* Kernel defaults (include/net/tcp.h), µs. */
#define DELACK_MAX_US 200000U
#define RTO_MIN_US 200000U

/* Outcome slots, read by the loader (see OUTCOME_* in the Rust side). */
enum {
	TIMEOUT_INIT_ANSWERED,
	DELACK_MAX_SET,
	DELACK_MAX_REFUSED,
	RTO_MIN_SET,
	RTO_MIN_REFUSED,
	CC_SET,
	CC_REFUSED,
	CC_LAST_ERROR,		/* -errno of the last refusal */
	OUTCOME_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OUTCOME_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} outcomes SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&outcomes, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u32 stretched(__u32 us)
{
	__u64 v = (__u64)us * tdf_milli / 1000;

	return v > 0x7fffffff ? 0x7fffffff : (__u32)v;
}

static __always_inline void stretch_timers(struct bpf_sock_ops *skops)
{
	int v = (int)stretched(DELACK_MAX_US);

	if (bpf_setsockopt(skops, SOL_TCP, TCP_BPF_DELACK_MAX, &v, sizeof(v)) == 0)
		count(DELACK_MAX_SET);
	else
		count(DELACK_MAX_REFUSED);
	v = (int)stretched(RTO_MIN_US);
	if (bpf_setsockopt(skops, SOL_TCP, TCP_BPF_RTO_MIN, &v, sizeof(v)) == 0)
		count(RTO_MIN_SET);
	else
		count(RTO_MIN_REFUSED);
}

static __always_inline void switch_cc(struct bpf_sock_ops *skops)
{
	char name[16];

	if (!cc_name[0])
		return;
	/* Byte by byte: volatile reads see the loader's value, a memcpy would be folded. */
	for (int i = 0; i < (int)sizeof(name); i++)
		name[i] = cc_name[i];
	long err = bpf_setsockopt(skops, SOL_TCP, TCP_CONGESTION, name, sizeof(name));
	if (err == 0) {
		count(CC_SET);
		return;
	}
	count(CC_REFUSED);
	__u32 slot = CC_LAST_ERROR;
	__u64 *v = bpf_map_lookup_elem(&outcomes, &slot);
	if (v)
		*v = (__u64)(-err);
}

SEC("sockops")
int sock_clock(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		if (!CONFIG_HZ || tdf_milli == 1000)
			break;
		/* Reply in jiffies: TDF seconds; the kernel caps it at TCP_RTO_MAX. */
		skops->reply = (int)((__u64)CONFIG_HZ * tdf_milli / 1000);
		count(TIMEOUT_INIT_ANSWERED);
		break;
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		switch_cc(skops);
		if (tdf_milli != 1000)
			stretch_timers(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		switch_cc(skops);
		if (tdf_milli != 1000)
			stretch_timers(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		if (tdf_milli != 1000)
			stretch_timers(skops);
		break;
	default:
		break;
	}
	return 1;
}
