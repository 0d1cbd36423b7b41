/**
 * Gossip metrics of a {@link GossipAgent}, read at scrape time from its counters and view
 * (nothing is added to the protocol's paths).
 *
 * | family                                      | type    | source                          |
 * |---------------------------------------------|---------|---------------------------------|
 * | `vectordb_gossip_members`                   | gauge   | members by `state` (alive, suspect, dead, left) and `role` |
 * | `vectordb_gossip_suspicions_total`          | counter | members this node came to hold suspect |
 * | `vectordb_gossip_probes_total`              | counter | direct probes sent              |
 * | `vectordb_gossip_probes_failed_total`       | counter | probes with no ack, direct or indirect |
 * | `vectordb_gossip_indirect_probes_total`     | counter | ping-req relays asked           |
 * | `vectordb_gossip_refutations_total`         | counter | claims about this node refuted  |
 * | `vectordb_gossip_messages_sent_total`       | counter | sends the peer accepted         |
 * | `vectordb_gossip_messages_received_total`   | counter | messages delivered to the state machine |
 * | `vectordb_gossip_send_failures_total`       | counter | sends that failed               |
 * | `vectordb_gossip_messages_dropped_total`    | counter | by `reason` (queue_full, oversize, peers_max) |
 *
 * @module
 */
import type { Metrics } from "../common/metrics.ts";
import type { GossipAgent } from "./gossip_agent.ts";
import type { MemberState } from "./membership.ts";

const STATES: readonly MemberState[] = ["alive", "suspect", "dead", "left"];

/** Adds the gossip families of `agent` to `metrics`. */
export function addGossipMetrics(metrics: Metrics, agent: GossipAgent): void {
  metrics.gauge(
    "vectordb_gossip_members",
    "Members in this process's gossip view (itself included), by state and role",
    () => {
      const counts = new Map<string, number>();
      for (const s of STATES) {
        counts.set(`${s}\u0000node`, 0);
        counts.set(`${s}\u0000router`, 0);
      }
      for (const m of agent.members()) {
        const key = `${m.state}\u0000${m.meta.role}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [...counts].map(([key, value]) => {
        const [state, role] = key.split("\u0000");
        return { labels: { state, role }, value };
      });
    },
  );
  const m = agent.membership.stats;
  const a = agent.stats;
  const counter = (name: string, help: string, read: () => number) =>
    metrics.counterFrom(name, help, () => [{ value: read() }]);
  counter(
    "vectordb_gossip_suspicions_total",
    "Members this process came to hold suspect (its own failed probe or another's word)",
    () => m.suspicions,
  );
  counter("vectordb_gossip_probes_total", "Direct probes (pings) sent", () => m.probes);
  counter(
    "vectordb_gossip_probes_failed_total",
    "Probes that got no ack, directly or through relays",
    () => m.probes_failed,
  );
  counter(
    "vectordb_gossip_indirect_probes_total",
    "Indirect probes (ping-req through relays) started",
    () => m.indirect_probes,
  );
  counter(
    "vectordb_gossip_refutations_total",
    "Suspect or dead claims about this process that it refuted",
    () => m.refutations,
  );
  counter("vectordb_gossip_messages_sent_total", "Gossip sends the peer accepted", () => a.sent);
  counter(
    "vectordb_gossip_messages_received_total",
    "Gossip messages delivered to the state machine",
    () => a.received,
  );
  counter(
    "vectordb_gossip_send_failures_total",
    "Gossip sends that failed (unreachable, deadline, rejected)",
    () => a.send_failed,
  );
  metrics.counterFrom(
    "vectordb_gossip_messages_dropped_total",
    "Gossip messages dropped before sending, by reason",
    () => [
      { labels: { reason: "queue_full" }, value: a.dropped_queue_full },
      { labels: { reason: "oversize" }, value: a.dropped_oversize },
      { labels: { reason: "peers_max" }, value: a.dropped_peers_max },
    ],
  );
}
