/* Septa's shim over DPDK 22.11: out-of-line copies of the `static inline` functions the Rust
 * side needs, plus constants that DPDK defines with function-like macros (which bindgen cannot
 * evaluate). No logic beyond forwarding. */
#ifndef SEPTA_DPDK_SHIM_H
#define SEPTA_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

uint16_t septa_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                                uint16_t nb_pkts);
uint16_t septa_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                                uint16_t nb_pkts);
struct rte_mbuf *septa_rte_pktmbuf_alloc(struct rte_mempool *mp);
int septa_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void septa_rte_pktmbuf_free(struct rte_mbuf *m);
char *septa_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t septa_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
unsigned int septa_rte_lcore_id(void);
int septa_rte_errno(void);

/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP */
extern const uint64_t SEPTA_RSS_HF_IP_TCP_UDP;
extern const uint32_t SEPTA_LCORE_ID_ANY;
extern const uint16_t SEPTA_PKTMBUF_HEADROOM;

#endif
