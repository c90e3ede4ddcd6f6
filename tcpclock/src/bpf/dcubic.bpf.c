// SPDX-License-Identifier: GPL-2.0
/*
 * CUBIC congestion control on a dilated clock.
 *
 * A node's TCP stack runs on real time, but the node perceives time slowed by the TDF. CUBIC
 * grows its window as a function of time elapsed since the last reduction; on real time the
 * window of a scaled node grows TDF times too fast in the node's virtual time. This version
 * measures every time span on the kernel's real clock and converts it to the node's virtual
 * time before it enters the cubic function: t_virtual = t_real / TDF. Thresholds that are
 * absolute time spans (HyStart's ACK spacing and delay bounds, the update throttle, the
 * post-recovery RTT blackout) are virtual-time constants and therefore stretched by the TDF.
 * Ratios of two real spans (an ACK train against the minimum RTT) need no scaling.
 *
 * Written from the CUBIC paper (RFC 9438) and the kernel's documented constants
 * (beta 717/1024, C = 0.4, HyStart thresholds); integer arithmetic throughout.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* TDF × 1000, set by the loader before the object is loaded. */
const volatile u32 tdf_milli = 1000;

extern u32 tcp_slow_start(struct tcp_sock *tp, u32 acked) __ksym;
extern void tcp_cong_avoid_ai(struct tcp_sock *tp, u32 w, u32 acked) __ksym;
extern u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;
extern unsigned int CONFIG_HZ __kconfig __weak;

#define BETA 717U		/* multiplicative decrease, /1024 */
#define BETA_BASE 1024U
#define C_SCALED 410ULL		/* C = 0.4, in units of 1/1024 */
#define TIME_SHIFT 10		/* cubic time unit: 2^-10 s */
/* 2^(10 + 3*10) / 410: K^3 = (W_max - cwnd) / C in (2^-10 s)^3. */
#define CUBE_FACTOR ((1ULL << 40) / C_SCALED)
/* TCP-friendly region: Reno's window grows by one every RENO_DIV/8 × cwnd ACKs (3β/(2-β) form). */
#define RENO_DIV (8U * (BETA_BASE + BETA) / 3U / (BETA_BASE - BETA))
/* |t - K| beyond this overflows C·offs³ in 64 bits; the target is huge there anyway. */
#define OFFS_MAX (1ULL << 18)

/* Virtual-time constants, µs. */
#define THROTTLE_US 31250U	/* recompute the target at most every 1/32 s unless cwnd moved */
#define BLACKOUT_US 1000000U	/* ignore RTT samples for 1 s after a reduction */
#define HYSTART_ACK_SPACING_US 2000U
#define HYSTART_DELAY_MIN_US 4000U
#define HYSTART_DELAY_MAX_US 16000U
#define HYSTART_ACK_DELAY_CAP_US 1000U
#define HYSTART_LOW_WINDOW 16U
#define HYSTART_MIN_SAMPLES 8U

struct dcubic {
	u32 cnt;		/* ACKs needed for one cwnd increment */
	u32 w_max;		/* cwnd before the last reduction */
	u32 last_cwnd;
	u32 origin;		/* plateau of the cubic curve */
	u32 k;			/* virtual time to reach the plateau, 2^-10 s */
	u32 delay_min;		/* minimum RTT seen, real µs */
	u32 ack_cnt;
	u32 reno_cwnd;		/* what Reno would have by now */
	u64 last_time;		/* real µs of the last target computation */
	u64 epoch_start;	/* real µs the current growth epoch began, 0 = none */
	u32 round_start;	/* HyStart: real µs (low bits) the round began */
	u32 end_seq;
	u32 last_ack;
	u32 curr_rtt;
	u8 sample_cnt;
	u8 found;
};

_Static_assert(sizeof(struct dcubic) <= 13 * sizeof(u64), "state must fit icsk_ca_priv");

static __always_inline struct tcp_sock *tcp_of(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline struct dcubic *state_of(struct sock *sk)
{
	return (struct dcubic *)((struct inet_connection_sock *)sk)->icsk_ca_priv;
}

/* A virtual-time span as the real span that the node perceives as it. */
static __always_inline u64 real_us(u64 virtual_us)
{
	return virtual_us * tdf_milli / 1000;
}

static __always_inline bool in_slow_start(struct tcp_sock *tp)
{
	return tp->snd_cwnd < tp->snd_ssthresh;
}

static __always_inline bool cwnd_limited(struct tcp_sock *tp)
{
	if (in_slow_start(tp))
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited);
}

/*
 * Integer cube root, one result bit per three input bits (restoring method). Branch-free:
 * BPF has no conditional set, and a data-dependent branch per step would make the verifier
 * walk 2^22 paths.
 */
static u32 cbrt_u64(u64 x)
{
	u64 y = 0;

	for (int s = 63; s >= 0; s -= 3) {
		y <<= 1;
		u64 b = 3 * y * (y + 1) + 1;	/* < 2^45: y < 2^21 */
		/* (x >> s) >= b, from the sign of the difference (both operands < 2^63). */
		u64 take = 1 - (((x >> s) - b) >> 63);
		x -= (b << s) & (0 - take);
		y += take;
	}
	return (u32)y;
}

static __always_inline void hystart_reset(struct sock *sk, struct dcubic *ca)
{
	struct tcp_sock *tp = tcp_of(sk);
	u32 now = (u32)tp->tcp_mstamp;

	ca->round_start = now;
	ca->last_ack = now;
	ca->end_seq = tp->snd_nxt;
	ca->curr_rtt = ~0U;
	ca->sample_cnt = 0;
}

static __always_inline void epoch_reset(struct dcubic *ca)
{
	__builtin_memset(ca, 0, sizeof(*ca));
}

SEC("struct_ops")
void BPF_PROG(dcubic_init, struct sock *sk)
{
	struct dcubic *ca = state_of(sk);

	epoch_reset(ca);
	hystart_reset(sk, ca);
}

/* Sets ca->cnt: how many ACKs until the window may grow by one segment. */
static __always_inline void cubic_update(struct sock *sk, struct dcubic *ca, u32 cwnd, u32 acked)
{
	u64 now = tcp_of(sk)->tcp_mstamp;

	ca->ack_cnt += acked;
	if (ca->last_cwnd == cwnd && now - ca->last_time <= real_us(THROTTLE_US))
		return;

	if (!(ca->epoch_start && now == ca->last_time)) {
		ca->last_cwnd = cwnd;
		ca->last_time = now;
		if (!ca->epoch_start) {
			ca->epoch_start = now;
			ca->ack_cnt = acked;
			ca->reno_cwnd = cwnd;
			if (ca->w_max <= cwnd) {
				ca->k = 0;
				ca->origin = cwnd;
			} else {
				ca->k = cbrt_u64(CUBE_FACTOR * (ca->w_max - cwnd));
				ca->origin = ca->w_max;
			}
		}
		/* Virtual time since the epoch began, one RTT ahead, in 2^-10 s. */
		u64 elapsed = now - ca->epoch_start + ca->delay_min;
		u64 t = (elapsed << TIME_SHIFT) / (1000ULL * tdf_milli);
		u64 offs = t < ca->k ? ca->k - t : t - ca->k;
		if (offs > OFFS_MAX)
			offs = OFFS_MAX;
		u64 delta = (C_SCALED * offs * offs * offs) >> (10 + 3 * TIME_SHIFT);
		u64 target = t < ca->k ? (ca->origin > delta ? ca->origin - delta : 0) : ca->origin + delta;

		if (target > cwnd) {
			u64 cnt = cwnd / (target - cwnd);
			ca->cnt = cnt ? (u32)cnt : 1;
		} else {
			ca->cnt = 100 * cwnd;
		}
		/* No loss yet: do not grow slower than one segment per 20 ACKs. */
		if (ca->w_max == 0 && ca->cnt > 20)
			ca->cnt = 20;
	}

	/* TCP-friendly region: never grow slower than Reno would. */
	u32 per_seg = (cwnd * RENO_DIV) >> 3;
	if (per_seg && ca->ack_cnt > per_seg) {
		u32 n = (ca->ack_cnt - 1) / per_seg;
		ca->ack_cnt -= n * per_seg;
		ca->reno_cwnd += n;
	}
	if (ca->reno_cwnd > cwnd) {
		u32 max_cnt = cwnd / (ca->reno_cwnd - cwnd);
		if (ca->cnt > max_cnt)
			ca->cnt = max_cnt;
	}
	if (ca->cnt < 2)
		ca->cnt = 2;
}

SEC("struct_ops")
void BPF_PROG(dcubic_cong_avoid, struct sock *sk, u32 ack, u32 acked)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct dcubic *ca = state_of(sk);

	if (!cwnd_limited(tp))
		return;
	if (in_slow_start(tp)) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	cubic_update(sk, ca, tp->snd_cwnd, acked);
	tcp_cong_avoid_ai(tp, ca->cnt, acked);
}

SEC("struct_ops")
u32 BPF_PROG(dcubic_ssthresh, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct dcubic *ca = state_of(sk);
	u32 cwnd = tp->snd_cwnd;

	ca->epoch_start = 0;
	/* Fast convergence: release bandwidth to newer flows when the plateau shrinks. */
	if (cwnd < ca->w_max)
		ca->w_max = cwnd * (BETA_BASE + BETA) / (2 * BETA_BASE);
	else
		ca->w_max = cwnd;
	cwnd = cwnd * BETA / BETA_BASE;
	return cwnd > 2 ? cwnd : 2;
}

SEC("struct_ops")
void BPF_PROG(dcubic_set_state, struct sock *sk, u8 new_state)
{
	struct dcubic *ca = state_of(sk);

	if (new_state == TCP_CA_Loss) {
		epoch_reset(ca);
		hystart_reset(sk, ca);
	}
}

SEC("struct_ops")
void BPF_PROG(dcubic_cwnd_event, struct sock *sk, int ev)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct dcubic *ca = state_of(sk);

	/* Idle time is not growth time: shift the epoch by the idle span. */
	if (ev != CA_EVENT_TX_START || !ca->epoch_start || !CONFIG_HZ)
		return;
	s32 idle_jiffies = (s32)((u32)bpf_jiffies64() - tp->lsndtime);
	if (idle_jiffies <= 0)
		return;
	u64 now = tp->tcp_mstamp;
	ca->epoch_start += (u64)idle_jiffies * 1000000ULL / CONFIG_HZ;
	if (ca->epoch_start > now)
		ca->epoch_start = now;
}

/* HyStart's extra allowance for ACK compression under pacing (real time at the real rate). */
static __always_inline u32 ack_delay_allowance(struct sock *sk)
{
	unsigned long rate = sk->sk_pacing_rate;
	u64 cap = real_us(HYSTART_ACK_DELAY_CAP_US);

	if (!rate)
		return 0;
	u64 d = (u64)sk->sk_gso_max_size * 4 * 1000000ULL / rate;
	return (u32)(d < cap ? d : cap);
}

static __always_inline void hystart_update(struct sock *sk, struct dcubic *ca, u32 delay)
{
	struct tcp_sock *tp = tcp_of(sk);

	if ((s32)(tp->snd_una - ca->end_seq) > 0)
		hystart_reset(sk, ca);

	/* ACK train: closely spaced ACKs spanning half the min RTT mean the pipe is full. */
	u32 now = (u32)tp->tcp_mstamp;
	if ((s32)(now - ca->last_ack) <= (s32)real_us(HYSTART_ACK_SPACING_US)) {
		ca->last_ack = now;
		u32 threshold = ca->delay_min + ack_delay_allowance(sk);
		if (sk->sk_pacing_status == SK_PACING_NONE)
			threshold >>= 1;
		if ((s32)(now - ca->round_start) > (s32)threshold) {
			ca->found = 1;
			tp->snd_ssthresh = tp->snd_cwnd;
		}
	}

	/* Delay increase: the round's minimum RTT rose clearly above the path's minimum. */
	if (ca->curr_rtt > delay)
		ca->curr_rtt = delay;
	if (ca->sample_cnt < HYSTART_MIN_SAMPLES) {
		ca->sample_cnt++;
		return;
	}
	u64 lo = real_us(HYSTART_DELAY_MIN_US), hi = real_us(HYSTART_DELAY_MAX_US);
	u64 margin = ca->delay_min >> 3;
	if (margin < lo)
		margin = lo;
	if (margin > hi)
		margin = hi;
	if ((u64)ca->curr_rtt > (u64)ca->delay_min + margin) {
		ca->found = 1;
		tp->snd_ssthresh = tp->snd_cwnd;
	}
}

SEC("struct_ops")
void BPF_PROG(dcubic_pkts_acked, struct sock *sk, const struct ack_sample *sample)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct dcubic *ca = state_of(sk);
	s32 rtt = sample->rtt_us;

	if (rtt < 0)
		return;
	/* Right after a reduction the queue drains: its RTT samples are not the path's. */
	if (ca->epoch_start && tp->tcp_mstamp - ca->epoch_start < real_us(BLACKOUT_US))
		return;
	u32 delay = rtt ? (u32)rtt : 1;
	if (!ca->delay_min || ca->delay_min > delay)
		ca->delay_min = delay;
	if (!ca->found && in_slow_start(tp) && tp->snd_cwnd >= HYSTART_LOW_WINDOW)
		hystart_update(sk, ca, delay);
}

SEC("struct_ops")
u32 BPF_PROG(dcubic_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

/* The loader overwrites name (e.g. "cubic_d10") before registration. */
SEC(".struct_ops.link")
struct tcp_congestion_ops dcubic = {
	.init = (void *)dcubic_init,
	.ssthresh = (void *)dcubic_ssthresh,
	.cong_avoid = (void *)dcubic_cong_avoid,
	.set_state = (void *)dcubic_set_state,
	.undo_cwnd = (void *)dcubic_undo_cwnd,
	.cwnd_event = (void *)dcubic_cwnd_event,
	.pkts_acked = (void *)dcubic_pkts_acked,
	.flags = TCP_CONG_NON_RESTRICTED,
	.name = "cubic_d",
};
