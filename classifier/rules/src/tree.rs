//! Decision tree over hyper-rectangles ("boxes"), HyperSplit-style: binary cuts at rule
//! boundaries, chosen to balance the two halves, down to leaves of a few boxes that
//! are scanned in priority order.
//!
//! Every rule is first expanded into boxes over [`DIMS`] 32-bit dimensions (an IPv6 prefix is a box
//! over four address words). A node region shrinks at every cut; a box that covers a node's whole
//! region hides every lower-priority box there, which prunes most of the replication that cutting
//! would otherwise cause.

/// Number of 32-bit dimensions of a point: source words 0..4, destination words 4..8, then source
/// port, destination port, protocol, VLAN and input port.
pub(crate) const DIMS: usize = 13;
pub(crate) const D_SPORT: usize = 8;
pub(crate) const D_DPORT: usize = 9;
pub(crate) const D_PROTO: usize = 10;
pub(crate) const D_VLAN: usize = 11;
pub(crate) const D_INPORT: usize = 12;

/// A flow key flattened into dimension values, padded to 16 so that indexing by a masked
/// dimension needs no bounds check; the padding is always 0.
pub(crate) type Point = [u32; 16];
/// A padding dimension (always 0): leaf nodes compare it against 0, so walks stay on the leaf.
const LEAF_DIM: u32 = 15;

/// One box: inclusive `[lo, hi]` per dimension, and the index of the rule it came from.
#[derive(Clone, Debug)]
pub(crate) struct RuleBox {
    pub rule: u32,
    pub r: [[u32; 2]; DIMS],
}

/// "No rule matched" as a rule index.
pub(crate) const NO_MATCH: u32 = u32::MAX;
/// Hard limit on the depth of the tree; below it a node becomes a leaf whatever its size.
const MAX_DEPTH: usize = 60;

/// An inner node sends a key to `kids[(p[dim] >= thr) as usize]`. A leaf node has
/// `dim == LEAF_DIM`, `thr == 0`, `kids[1]` = itself and `kids[0]` = its offset in the leaf data,
/// so a walk can take a fixed number of steps without checking where it is.
#[derive(Clone, Copy, Debug)]
struct Node {
    dim: u32,
    thr: u32,
    kids: [u32; 2],
}

/// A compiled tree. Lookups read `nodes` from the root down to a leaf, then one run of `leaves`.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    /// Per leaf: count, then per box: rule index, then `(lo, hi - lo)` for each checked dimension.
    leaves: Vec<u32>,
    /// Dimensions where some box is narrower than the universe; only these are checked in leaves.
    dims: Vec<u8>,
    /// Root cut: a key starts at node `roots[p[root_dim] >> root_shift][0]`, which replaces the top
    /// levels of binary cuts by one indexed load. `[1]` is the lowest rule index in the bucket
    /// ([`NO_MATCH`] when empty): a key that already matched a better rule skips the bucket.
    roots: Vec<[u32; 2]>,
    root_dim: u32,
    root_shift: u32,
    /// Lowest rule index in the tree; a key that already matched a better rule skips the tree.
    pub min_rule: u32,
    /// The median over root buckets of their best rule: what a key typically gets here. Trees
    /// are walked in this order (see `TreeSet::new`), so a tree of broad early rules goes first
    /// and its answers let keys skip the buckets of the others.
    pub typical: u32,
    /// Partition group the tree serves (see `compile::group_of`).
    pub group: u8,
    pub depth: usize,
    /// Steps the lanes of a lockstep walk take together (the 75th percentile of leaf depths).
    lock_steps: usize,
    /// `nodes.len() - 1`; `nodes` is padded to a power of two so that walks index it by a mask.
    mask: usize,
}

/// Pads `nodes` to a power of two with copies of node 0 (the empty leaf); returns the mask.
fn pad(nodes: &mut Vec<Node>) -> usize {
    let n = nodes.len().max(1).next_power_of_two();
    let fill = nodes[0];
    nodes.resize(n, fill);
    n - 1
}

impl Tree {
    /// Builds a tree over `boxes` (sorted by rule index) inside `universe`; `None` when the leaves
    /// would hold more than `budget` box copies (too much replication for one tree).
    pub fn build(
        boxes: &[RuleBox],
        universe: &[[u32; 2]; DIMS],
        leaf_size: usize,
        budget: usize,
    ) -> Option<Tree> {
        let dims: Vec<u8> = (0..DIMS)
            .filter(|&d| boxes.iter().any(|b| b.r[d] != universe[d]))
            .map(|d| d as u8)
            .collect();
        let mut b = Builder {
            boxes,
            dims: &dims,
            leaf_size: leaf_size.max(1),
            budget,
            leaf_depths: Vec::new(),
            nodes: Vec::new(),
            leaves: Vec::new(),
            depth: 0,
        };
        // Node 0: an empty leaf, where lanes that cannot improve on their match start.
        b.leaf(&[]);
        let (root_dim, root_shift, lists) = root_cut(boxes, &dims, universe, leaf_size);
        let mut roots = Vec::with_capacity(lists.len());
        let mut start = 0;
        while start < lists.len() {
            // Adjacent buckets with the same boxes share one subtree built over their union.
            let mut end = start + 1;
            while end < lists.len() && lists[end] == lists[start] {
                end += 1;
            }
            let mut region = *universe;
            if let Some(r) = region.get_mut(root_dim as usize) {
                let lo = u64::from(r[0]) + ((start as u64) << root_shift);
                let hi = (u64::from(r[0]) + ((end as u64) << root_shift) - 1).min(u64::from(r[1]));
                // Both fit in u32: they lie inside the universe range of the dimension.
                *r = [lo as u32, hi as u32];
            }
            let best = lists[start]
                .first()
                .map_or(NO_MATCH, |&i| boxes[i as usize].rule);
            let sub = b.build(&mut region, lists[start].clone(), 1);
            roots.extend(std::iter::repeat_n([sub, best], end - start));
            start = end;
        }
        if b.budget == 0 {
            return None;
        }
        let mut depths = std::mem::take(&mut b.leaf_depths);
        depths.sort_unstable();
        // Lockstep walks take this many steps together; deeper lanes then finish one by one.
        // (A subtree root is at depth 1, so a leaf at depth `d` is `d - 1` steps away.)
        let lock_steps = depths
            .get(depths.len() * 3 / 4)
            .map_or(0, |&d| usize::from(d).saturating_sub(1));
        let (mut nodes, leaves, depth) = (b.nodes, b.leaves, b.depth);
        let mask = pad(&mut nodes);
        let typical = typical_rule(&roots);
        Some(Tree {
            typical,
            lock_steps,
            mask,
            nodes,
            leaves,
            dims,
            roots,
            root_dim,
            root_shift,
            min_rule: boxes.first().map_or(NO_MATCH, |b| b.rule),
            group: 0,
            depth,
        })
    }

    pub fn in_group(mut self, group: u8) -> Self {
        self.group = group;
        self
    }

    /// Renumbers the rule indices stored in the leaves (unreachable old leaves included).
    pub fn remap(&mut self, f: impl Fn(u32) -> u32) {
        let stride = 1 + 2 * self.dims.len();
        let mut off = 0;
        while off < self.leaves.len() {
            let count = self.leaves[off] as usize;
            for k in 0..count {
                let r = &mut self.leaves[off + 1 + k * stride];
                *r = f(*r);
            }
            off += 1 + count * stride;
        }
        if self.min_rule != NO_MATCH {
            self.min_rule = f(self.min_rule);
        }
        if self.typical != NO_MATCH {
            self.typical = f(self.typical);
        }
        for [_, m] in &mut self.roots {
            if *m != NO_MATCH {
                *m = f(*m);
            }
        }
    }

    /// Rebuilds the root buckets that `changed` overlaps from `group` (every box of this tree's
    /// group after the edit, sorted by rule). Returns `false`, leaving the tree untouched, when
    /// `changed` needs a dimension the tree does not check (the caller then rebuilds fully).
    pub fn patch(
        &mut self,
        group: &[RuleBox],
        changed: &RuleBox,
        universe: &[[u32; 2]; DIMS],
        leaf_size: usize,
    ) -> bool {
        if (0..DIMS).any(|d| changed.r[d] != universe[d] && !self.dims.contains(&(d as u8))) {
            return false;
        }
        let rd = self.root_dim as usize;
        let (first, last) = if rd < DIMS {
            (
                changed.r[rd][0] >> self.root_shift,
                changed.r[rd][1] >> self.root_shift,
            )
        } else {
            (0, 0)
        };
        let (mut nodes, mut leaves) = (
            std::mem::take(&mut self.nodes),
            std::mem::take(&mut self.leaves),
        );
        let mut depth = self.depth;
        for bucket in first..=last {
            let mut region = *universe;
            if rd < DIMS {
                let lo = u64::from(bucket) << self.root_shift;
                let hi = (lo + (1u64 << self.root_shift) - 1).min(u64::from(universe[rd][1]));
                // Both fit in u32: they lie inside the universe range of the dimension.
                region[rd] = [lo as u32, hi as u32];
            }
            let local: Vec<RuleBox> = group
                .iter()
                .filter(|b| {
                    (0..DIMS).all(|d| b.r[d][0] <= region[d][1] && b.r[d][1] >= region[d][0])
                })
                .cloned()
                .collect();
            let mut b = Builder {
                boxes: &local,
                dims: &self.dims,
                leaf_size: leaf_size.max(1),
                budget: usize::MAX,
                leaf_depths: Vec::new(),
                nodes,
                leaves,
                depth,
            };
            let ids: Vec<u32> = (0..local.len() as u32).collect();
            let sub = b.build(&mut region, ids, 1);
            (nodes, leaves, depth) = (b.nodes, b.leaves, b.depth);
            self.roots[bucket as usize] = [sub, local.first().map_or(NO_MATCH, |b| b.rule)];
        }
        self.mask = pad(&mut nodes);
        self.nodes = nodes;
        self.leaves = leaves;
        self.depth = depth;
        self.min_rule = group.first().map_or(NO_MATCH, |b| b.rule);
        self.typical = typical_rule(&self.roots);
        true
    }

    /// Bytes used by the lookup structure.
    pub fn mem_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.leaves.len() * 4
            + self.roots.len() * 8
            + self.dims.len()
    }

    /// One line describing the shape of the tree (for benchmarks and tuning).
    pub fn describe(&self) -> String {
        let mut leaves = Vec::new();
        let mut off = 0;
        while off < self.leaves.len() {
            let c = self.leaves[off] as usize;
            leaves.push(c);
            off += 1 + c * (1 + 2 * self.dims.len());
        }
        let max = leaves.iter().max().copied().unwrap_or(0);
        let sum: usize = leaves.iter().sum();
        format!(
            "min_rule={} root_dim={} buckets={} nodes={} leaves={} leaf_entries={} max_leaf={} depth={} dims={:?}",
            self.min_rule,
            self.root_dim,
            self.roots.len(),
            self.nodes.len(),
            leaves.len(),
            sum,
            max,
            self.depth,
            self.dims
        )
    }

    #[inline(always)]
    fn root(&self, p: &Point) -> [u32; 2] {
        let b = p[(self.root_dim & 15) as usize] >> self.root_shift;
        self.roots[(b as usize).min(self.roots.len() - 1)]
    }

    /// Index of the first rule in this tree matching `p`, or [`NO_MATCH`].
    #[inline]
    pub fn lookup(&self, p: &Point) -> u32 {
        let mut n = &self.nodes[self.root(p)[0] as usize];
        while n.dim != LEAF_DIM {
            n = &self.nodes[n.kids[usize::from(p[(n.dim & 15) as usize] >= n.thr)] as usize];
        }
        self.scan(n.kids[0], p)
    }

    /// Looks up several points at once, interleaving their walks so that their memory loads
    /// overlap. `best[i]` is lowered to the tree's answer when that answer is better.
    #[inline]
    pub fn lookup_lanes<const N: usize>(&self, pts: &[Point; N], best: &mut [u32; N]) {
        // Lanes whose match beats every rule of their bucket skip the tree; the others are packed
        // into the first `m` slots (`lane[j]` is the key of slot `j`), so no step is spent on them.
        let mut lane = [0usize; N];
        let mut refs = [0u32; N];
        // The same per lane (not packed), skipped lanes parked on the empty leaf (node 0).
        let mut parked = [0u32; N];
        let mut m = 0;
        for i in 0..N {
            let [node, min] = self.root(&pts[i]);
            let walks = best[i] > min;
            // `m <= i < N`: the slot exists; it is kept only when the lane walks.
            lane[m] = i;
            refs[m] = node;
            parked[i] = if walks { node } else { 0 };
            m += usize::from(walks);
        }
        if m == N {
            self.walk(pts, &mut refs);
        } else if m > N / 2 {
            // A fixed-width step over all lanes costs about half of a packed lane's step (no
            // indirection through `lane`), so with more than half the lanes walking the parked
            // lanes ride along: an empty leaf loops to itself and scans nothing.
            self.walk(pts, &mut parked);
            let offs: [u32; N] = std::array::from_fn(|i| self.nodes[parked[i] as usize].kids[0]);
            let counts: [u32; N] = std::array::from_fn(|i| self.leaves[offs[i] as usize]);
            for i in 0..N {
                let found = self.scan_counted(offs[i], counts[i], &pts[i]);
                best[i] = best[i].min(found);
            }
            return;
        } else if m > 0 {
            // Unused slots hold roots of skipped lanes; park them on the empty leaf (node 0) so
            // that the leaf-header loads below only ever read leaf headers.
            refs[m..].fill(0);
            self.walk_some(pts, &lane[..m], &mut refs[..m]);
        } else {
            return;
        }
        // Load every lane's leaf header before scanning any, so that their cache misses
        // overlap instead of each scan waiting for its own.
        let offs: [u32; N] = std::array::from_fn(|j| self.nodes[refs[j] as usize].kids[0]);
        let counts: [u32; N] = std::array::from_fn(|j| self.leaves[offs[j] as usize]);
        for j in 0..m {
            let i = lane[j];
            let found = self.scan_counted(offs[j], counts[j], &pts[i]);
            best[i] = best[i].min(found);
        }
    }

    /// Walks every lane from `refs[i]` to its leaf: `lock_steps` steps in lockstep (leaves loop
    /// to themselves), then each remaining lane alone.
    #[inline(always)]
    fn walk<const N: usize>(&self, pts: &[Point; N], refs: &mut [u32; N]) {
        let (nodes, mask) = self.masked();
        for _ in 0..self.lock_steps {
            for i in 0..N {
                let n = &nodes[refs[i] as usize & mask];
                refs[i] = n.kids[usize::from(pts[i][(n.dim & 15) as usize] >= n.thr)];
            }
        }
        for i in 0..N {
            self.finish(&pts[i], &mut refs[i]);
        }
    }

    /// [`Tree::walk`] for the lanes `lane` (slot `j` walks `pts[lane[j]]` from `refs[j]`).
    #[inline(always)]
    fn walk_some<const N: usize>(&self, pts: &[Point; N], lane: &[usize], refs: &mut [u32]) {
        let (nodes, mask) = self.masked();
        for _ in 0..self.lock_steps {
            for (r, &i) in refs.iter_mut().zip(lane) {
                let n = &nodes[*r as usize & mask];
                *r = n.kids[usize::from(pts[i][(n.dim & 15) as usize] >= n.thr)];
            }
        }
        for (r, &i) in refs.iter_mut().zip(lane) {
            self.finish(&pts[i], r);
        }
    }

    /// Steps `r` down to its leaf.
    #[inline(always)]
    fn finish(&self, p: &Point, r: &mut u32) {
        let (nodes, mask) = self.masked();
        let mut n = &nodes[*r as usize & mask];
        while n.dim != LEAF_DIM {
            *r = n.kids[usize::from(p[(n.dim & 15) as usize] >= n.thr)];
            n = &nodes[*r as usize & mask];
        }
    }

    /// The nodes as a slice of exactly `mask + 1` entries, so that indexing by `x & mask` needs
    /// no bounds check. (Node indices in the tree are all `<= mask`: the mask never changes one.)
    #[inline(always)]
    fn masked(&self) -> (&[Node], usize) {
        (&self.nodes[..=self.mask], self.mask)
    }

    #[inline]
    fn scan(&self, off: u32, p: &Point) -> u32 {
        self.scan_counted(off, self.leaves[off as usize], p)
    }

    /// [`Tree::scan`] of the leaf at `off` whose box count (`leaves[off]`) is `count`.
    #[inline]
    fn scan_counted(&self, off: u32, count: u32, p: &Point) -> u32 {
        let off = off as usize;
        let count = count as usize;
        let nd = self.dims.len();
        let stride = 1 + 2 * nd;
        let mut o = off + 1;
        'boxes: for _ in 0..count {
            let b = &self.leaves[o..o + stride];
            o += stride;
            for (j, &d) in self.dims.iter().enumerate() {
                if p[usize::from(d & 15)].wrapping_sub(b[1 + 2 * j]) > b[2 + 2 * j] {
                    continue 'boxes;
                }
            }
            return b[0];
        }
        NO_MATCH
    }
}

/// The median of the non-empty root buckets' best rules ([`NO_MATCH`] when all are empty). Empty
/// buckets do not count: a key landing there skips the tree at no cost.
fn typical_rule(roots: &[[u32; 2]]) -> u32 {
    let mut best: Vec<u32> = roots
        .iter()
        .map(|r| r[1])
        .filter(|&m| m != NO_MATCH)
        .collect();
    if best.is_empty() {
        return NO_MATCH;
    }
    let mid = best.len() / 2;
    best.select_nth_unstable(mid);
    best[mid]
}

/// Target boxes per root bucket, and limits on the root table.
const BOXES_PER_BUCKET: usize = 2;
const MAX_ROOT_BITS: u32 = 16;
/// The root cut may copy each box this many times on average.
const ROOT_COPIES: usize = 3;

/// Picks the root cut: the dimension and shift whose buckets split the boxes most evenly within
/// the copy budget, and each bucket's boxes (in priority order).
fn root_cut(
    boxes: &[RuleBox],
    dims: &[u8],
    universe: &[[u32; 2]; DIMS],
    _leaf: usize,
) -> (u32, u32, Vec<Vec<u32>>) {
    let n = boxes.len();
    let want = (n / BOXES_PER_BUCKET)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .min(MAX_ROOT_BITS);
    // Cost: expected boxes left for a key drawn like the boxes, sum(c^2) / sum(c), scaled.
    let mut best: Option<(u64, u32, u32)> = None;
    for &d in dims {
        let [a, b] = universe[d as usize];
        if a != 0 || b == 0 {
            continue;
        }
        let width = 32 - b.leading_zeros();
        for bits in (1..=want.min(width)).rev() {
            let shift = width - bits;
            let mut count = vec![0u64; 1 << bits];
            let mut copies = 0usize;
            for bx in boxes {
                let [lo, hi] = bx.r[d as usize];
                let (l, h) = ((lo >> shift) as usize, (hi >> shift) as usize);
                copies += h - l + 1;
                if copies > ROOT_COPIES * n {
                    break;
                }
                for c in &mut count[l..=h] {
                    *c += 1;
                }
            }
            if copies > ROOT_COPIES * n {
                continue;
            }
            let cost =
                1024 * count.iter().map(|&c| c * c).sum::<u64>() / count.iter().sum::<u64>().max(1);
            if best.is_none_or(|(c, _, _)| cost < c) {
                best = Some((cost, u32::from(d), shift));
            }
            break;
        }
    }
    let Some((_, d, shift)) = best else {
        return (LEAF_DIM, 0, vec![(0..n as u32).collect()]);
    };
    let width = 32 - universe[d as usize][1].leading_zeros();
    let mut lists = vec![Vec::new(); 1 << (width - shift)];
    for (i, bx) in boxes.iter().enumerate() {
        let [lo, hi] = bx.r[d as usize];
        for l in &mut lists[(lo >> shift) as usize..=(hi >> shift) as usize] {
            l.push(i as u32);
        }
    }
    (d, shift, lists)
}

struct Builder<'a> {
    boxes: &'a [RuleBox],
    dims: &'a [u8],
    /// Leaves hold at most this many boxes unless no cut separates them.
    leaf_size: usize,
    /// Box copies the leaves may still take; 0 means the build gave up.
    budget: usize,
    /// Depth of every leaf built, for choosing the lockstep length.
    leaf_depths: Vec<u8>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    depth: usize,
}

impl Builder<'_> {
    fn covers(&self, b: &RuleBox, region: &[[u32; 2]; DIMS]) -> bool {
        self.dims.iter().all(|&d| {
            let d = d as usize;
            b.r[d][0] <= region[d][0] && b.r[d][1] >= region[d][1]
        })
    }

    fn build(&mut self, region: &mut [[u32; 2]; DIMS], mut ids: Vec<u32>, depth: usize) -> u32 {
        self.depth = self.depth.max(depth);
        // Everything after a box that covers the whole region is unreachable here.
        if let Some(k) = ids
            .iter()
            .position(|&i| self.covers(&self.boxes[i as usize], region))
        {
            ids.truncate(k + 1);
        }
        if ids.len() <= self.leaf_size || depth >= MAX_DEPTH || self.budget == 0 {
            self.note_leaf(depth, ids.len());
            return self.leaf(&ids);
        }
        let Some((dim, thr)) = self.choose_cut(region, &ids) else {
            self.note_leaf(depth, ids.len());
            return self.leaf(&ids);
        };
        let (left, right): (Vec<u32>, Vec<u32>) = {
            let mut l = Vec::new();
            let mut r = Vec::new();
            for &i in &ids {
                let b = &self.boxes[i as usize].r[dim];
                if b[0] < thr {
                    l.push(i);
                }
                if b[1] >= thr {
                    r.push(i);
                }
            }
            (l, r)
        };
        drop(ids);
        let me = self.nodes.len();
        self.nodes.push(Node {
            dim: dim as u32,
            thr,
            kids: [0, 0],
        });
        let saved = region[dim];
        region[dim] = [saved[0], thr - 1];
        let l = self.build(region, left, depth + 1);
        region[dim] = [thr, saved[1]];
        let r = self.build(region, right, depth + 1);
        region[dim] = saved;
        self.nodes[me].kids = [l, r];
        me as u32
    }

    /// The cut `(dim, t)` (left: `< t`, right: `>= t`) that minimises the larger side, then the
    /// total; `None` when no cut makes either side smaller.
    fn choose_cut(&self, region: &[[u32; 2]; DIMS], ids: &[u32]) -> Option<(usize, u32)> {
        let n = ids.len();
        let mut best: Option<((usize, usize), usize, u32)> = None;
        let mut los = Vec::with_capacity(n);
        let mut his = Vec::with_capacity(n);
        let mut cands: Vec<u32> = Vec::with_capacity(2 * n);
        for &d in self.dims {
            let d = d as usize;
            let [a, b] = region[d];
            if a == b {
                continue;
            }
            los.clear();
            his.clear();
            cands.clear();
            for &i in ids {
                let [lo, hi] = self.boxes[i as usize].r[d];
                los.push(lo);
                his.push(hi);
                // Cut points strictly inside the region: left is [a, t-1], right is [t, b].
                if lo > a {
                    cands.push(lo);
                }
                if hi < b {
                    cands.push(hi + 1);
                }
            }
            if cands.is_empty() {
                continue;
            }
            los.sort_unstable();
            his.sort_unstable();
            cands.sort_unstable();
            cands.dedup();
            let (mut i, mut j) = (0usize, 0usize);
            for &t in &cands {
                // Boxes with lo < t go left; boxes with hi >= t go right.
                while i < n && los[i] < t {
                    i += 1;
                }
                while j < n && his[j] < t {
                    j += 1;
                }
                let (left, right) = (i, n - j);
                let score = (left.max(right), left + right);
                if (left < n || right < n) && best.is_none_or(|(s, _, _)| score < s) {
                    best = Some((score, d, t));
                }
            }
        }
        best.map(|(_, d, t)| (d, t))
    }

    /// Records a leaf's depth once per box it holds (keys land where rules are).
    fn note_leaf(&mut self, depth: usize, boxes: usize) {
        let d = depth.min(usize::from(u8::MAX)) as u8;
        self.leaf_depths
            .extend(std::iter::repeat_n(d, boxes.max(1)));
    }

    fn leaf(&mut self, ids: &[u32]) -> u32 {
        self.budget = self.budget.saturating_sub(ids.len());
        let off = self.leaves.len() as u32;
        self.leaves.push(ids.len() as u32);
        for &i in ids {
            let b = &self.boxes[i as usize];
            self.leaves.push(b.rule);
            for &d in self.dims {
                let [lo, hi] = b.r[d as usize];
                self.leaves.push(lo);
                self.leaves.push(hi - lo);
            }
        }
        let me = self.nodes.len() as u32;
        self.nodes.push(Node {
            dim: LEAF_DIM,
            thr: 0,
            kids: [off, me],
        });
        me
    }
}
