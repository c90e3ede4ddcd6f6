/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types the dilated-clock programs touch, declared by hand.
 *
 * Every struct carries preserve_access_index, so libbpf relocates each field access against
 * the running kernel's BTF (CO-RE): only the field names and types need to match, not the
 * layout. This keeps the build independent of the build host's kernel (no generated
 * vmlinux.h).
 */
#ifndef DIORAMA_TCPCLOCK_KERNEL_H
#define DIORAMA_TCPCLOCK_KERNEL_H

#include <linux/types.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int s32;
typedef unsigned long long u64;
typedef long long s64;
typedef _Bool bool;
#define true 1
#define false 0

struct sock {
	u32 sk_pacing_status;
	unsigned long sk_pacing_rate;
	unsigned int sk_gso_max_size;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	u64 icsk_ca_priv[13];
} __attribute__((preserve_access_index));

struct tcp_sock {
	u32 snd_cwnd;
	u32 snd_ssthresh;
	u32 lsndtime;
	u64 tcp_mstamp;
	u32 snd_nxt;
	u32 snd_una;
	u32 max_packets_out;
	u8 is_cwnd_limited : 1;
} __attribute__((preserve_access_index));

struct ack_sample {
	u32 pkts_acked;
	s32 rtt_us;
	u32 in_flight;
} __attribute__((preserve_access_index));

struct rate_sample;
union tcp_cc_info;

struct tcp_congestion_ops {
	u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, u32 ack, u32 acked);
	void (*set_state)(struct sock *sk, u8 new_state);
	void (*cwnd_event)(struct sock *sk, int ev);
	void (*pkts_acked)(struct sock *sk, const struct ack_sample *sample);
	u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
	u32 flags;
	void (*init)(struct sock *sk);
	void (*release)(struct sock *sk);
} __attribute__((preserve_access_index));

/* include/net/tcp.h values, stable kernel ABI of the congestion-control interface. */
#define TCP_CA_Loss 4
#define CA_EVENT_TX_START 0
#define TCP_CONG_NON_RESTRICTED 0x1
#define SK_PACING_NONE 0

#endif
