package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
	"sluice.dev/sluice/platform/runtime/transport"
)

// RegionTupleEpoch is the epoch of every tuple numbered inside a
// consistent region. It never changes, not across resets nor process
// restarts: a replay must continue the sequences its receivers restored,
// not start new ones.
const RegionTupleEpoch = 1

// CheckpointStore is what the engine needs of a checkpoint store
// (checkpoint.Store satisfies it).
type CheckpointStore interface {
	Put(ctx context.Context, key checkpoint.Key, data []byte) error
	Get(ctx context.Context, key checkpoint.Key) ([]byte, error)
	Prune(ctx context.Context, namespace, job, region, pe string, below uint64) (int, error)
}

// regionState is the PE's side of the protocol. Fields below the line are
// guarded by the engine's lock.
type regionState struct {
	ctrl    regionctl.Control
	store   CheckpointStore
	name    string
	initial map[string][]byte // the operators' state as built (restore seq 0)
	report  chan struct{}     // a new progress is to be reported
	work    chan struct{}     // store jobs are pending

	// ---- under Engine.mu
	// paused holds every source; wake is closed (and replaced) whenever a
	// held source may be able to go on.
	paused bool
	wake   chan struct{}
	// resetCh is closed (and replaced) at every reset, waking the
	// goroutines of sources that had finished.
	resetCh chan struct{}
	// marked is the drain this PE's sources emitted markers for (0 after
	// a reset); sources stay paused until a checkpoint at least as recent
	// is complete.
	marked uint64
	// The checkpoint being assembled: its seq, the snapshots so far, and
	// how many operators have taken theirs.
	drainSeq uint64
	snaps    map[string][]byte
	snapped  int
	progress v1alpha1.RegionProgress
	pruned   uint64
	jobs     []storeJob
	// width is the parallel region's width in the current epoch, for a
	// channel PE (0: not known), as the reset command said.
	width int32
	// orphans are the channel PEs a smaller width removed, whose
	// checkpoints channel 0 deletes once a checkpoint above orphansAt (the
	// one the narrowing reset restored) is complete: from then on no reset
	// reads them.
	orphans   []string
	orphansAt uint64
}

// storeJob is a checkpoint to write (blob set) or a prune of pe's
// checkpoints below seq (pe empty: this PE's).
type storeJob struct {
	seq   uint64
	blob  []byte
	prune bool
	pe    string
}

func newRegionState(ctrl regionctl.Control, store CheckpointStore, name string) *regionState {
	return &regionState{ctrl: ctrl, store: store, name: name, report: make(chan struct{}, 1), work: make(chan struct{}, 1),
		paused: true, wake: make(chan struct{}), resetCh: make(chan struct{}),
		progress: v1alpha1.RegionProgress{Region: name}}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// kick wakes the sources waiting in a paused step so that they look again.
func (rg *regionState) kick() {
	close(rg.wake)
	rg.wake = make(chan struct{})
}

func (rg *regionState) setPaused(p bool) {
	if rg.paused != p {
		rg.paused = p
		rg.kick()
	}
}

// RegionProgress is what the PE last reported (or is about to report) to
// its region; the zero value outside a region.
func (e *Engine) RegionProgress() v1alpha1.RegionProgress {
	if e.rg == nil {
		return v1alpha1.RegionProgress{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rg.progress
}

// Epoch is the region epoch the PE has applied (0 before its first reset,
// and outside a region).
func (e *Engine) Epoch() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.epoch
}

func (e *Engine) key(seq uint64) checkpoint.Key {
	pe := e.opts.PE
	return checkpoint.Key{Namespace: pe.Namespace, Job: pe.Job, Region: e.rg.name, PE: pe.Name, Seq: seq}
}

func (e *Engine) startRegion() {
	rg := e.rg
	e.wg.Add(4)
	go func() {
		defer e.wg.Done()
		if err := rg.ctrl.Run(e.ctx); err != nil && e.ctx.Err() == nil {
			e.log.Error("region control stopped", "region", rg.name, "err", err)
		}
	}()
	go e.commandLoop()
	go e.reportLoop()
	go e.storeLoop()
	signal(rg.report) // epoch 0: this process has applied no reset yet
}

func (e *Engine) commandLoop() {
	defer e.wg.Done()
	next := make(chan regionctl.Command, 1)
	e.wg.Add(1)
	go e.applyLoop(next)
	cmds := e.rg.ctrl.Commands()
	for {
		select {
		case <-e.ctx.Done():
			return
		case cmd, ok := <-cmds:
			if !ok {
				return
			}
			if cmd.State == v1alpha1.RegionResetting && uint64(max(cmd.Epoch, 0)) > e.appliedEpoch.Load() {
				// The command being applied may wait for the engine lock,
				// which a source blocked on a writer to a dead peer holds:
				// release the writers now, not when the reset's turn comes.
				// What they drop belongs to the epoch the reset discards.
				for _, w := range e.writers {
					w.Interrupt()
				}
			}
			// Latest wins, as on the control's own channel.
			select {
			case <-next:
			default:
			}
			next <- cmd
		}
	}
}

// applyLoop applies commands one at a time.
func (e *Engine) applyLoop(next <-chan regionctl.Command) {
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case cmd := <-next:
			e.apply(cmd)
		}
	}
}

// apply acts on one region command. Commands of an epoch this PE has not
// applied (other than the reset that brings it there) are ignored: the
// coordinator sees the PE out of sync and resets the region.
func (e *Engine) apply(cmd regionctl.Command) {
	switch cmd.State {
	case v1alpha1.RegionResetting:
		e.reset(cmd)
	case v1alpha1.RegionDraining:
		e.mu.Lock()
		e.drain(cmd)
		e.mu.Unlock()
	case v1alpha1.RegionHealthy:
		e.mu.Lock()
		e.healthy(cmd)
		e.mu.Unlock()
	}
}

// reset applies epoch cmd.Epoch, restoring checkpoint cmd.RestoreSeq.
func (e *Engine) reset(cmd regionctl.Command) {
	rg := e.rg
	epoch := uint64(max(cmd.Epoch, 0))
	// Not e.Epoch(): a source blocked on a writer to a dead peer holds
	// e.mu until the writers below are interrupted.
	if epoch <= e.appliedEpoch.Load() {
		return
	}
	states := rg.initial
	var orphans []string
	var width int32
	if ch := e.opts.PE.Channel; ch != nil {
		width = cmd.Width(ch.Region)
	}
	if cmd.RestoreSeq > 0 {
		var err error
		if states, orphans, err = e.load(uint64(cmd.RestoreSeq), width); err != nil {
			// Not applied, not reported: the reset times out and the
			// coordinator tries again with a new epoch.
			e.log.Error("reset: cannot load checkpoint", "region", rg.name, "epoch", epoch, "seq", cmd.RestoreSeq, "err", err)
			return
		}
	}
	// A source blocked on a full writer holds the lock; release it.
	for _, w := range e.writers {
		w.Interrupt()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rg.setPaused(true)
	rg.width = width
	rg.orphans, rg.orphansAt = orphans, uint64(max(cmd.RestoreSeq, 0))
	e.epoch = epoch
	e.appliedEpoch.Store(epoch)
	// Inputs first: closing the old connections drops what they still
	// carry, and unblocks upstream writers stuck on us.
	e.server.SetEpoch(epoch)
	for _, w := range e.writers {
		w.Reset(epoch)
	}
	if err := e.restoreAll(states); err != nil {
		e.log.Error("reset: restore failed", "region", rg.name, "epoch", epoch, "seq", cmd.RestoreSeq, "err", err)
		return
	}
	for _, n := range e.nodes {
		n.finished, n.ended, n.markSeq, n.markCount, n.hold = false, 0, 0, 0, false
		if n.src != nil {
			n.lastAsk = n.src.Seq()
		}
	}
	clear(e.ended)
	e.complete = false
	rg.marked, rg.drainSeq, rg.snaps, rg.snapped = 0, 0, nil, 0
	rg.progress.Epoch = int64(epoch)
	rg.progress.DrainRequested = false
	// A checkpoint above the restored one belongs to a drain the reset
	// abandoned: the next drain reuses its seq, and must not count as done
	// before this PE writes it again (a channel's checkpoint is read by the
	// other channels after a width change).
	rg.progress.Checkpointed = min(rg.progress.Checkpointed, max(cmd.RestoreSeq, 0))
	signal(rg.report)
	close(rg.resetCh)
	rg.resetCh = make(chan struct{})
	e.log.Info("reset applied", "region", rg.name, "epoch", epoch, "restored", cmd.RestoreSeq)
}

// load reads the states checkpoint seq holds for the PE's operators. A
// channel PE of a parallel region whose checkpoint was taken at another
// width than the epoch's, width, rebuilds them from every channel of that
// width (loadChannel), and channel 0 learns which channels a smaller
// width left behind (orphans).
func (e *Engine) load(seq uint64, width int32) (states map[string][]byte, orphans []string, err error) {
	if ch := e.opts.PE.Channel; ch != nil {
		if e.opts.NoRedistribution {
			states, err = e.loadOwnOrInitial(seq)
			return states, nil, err
		}
		return e.loadChannel(seq, ch, width)
	}
	states, err = e.loadPE(e.opts.PE.Name, seq)
	return states, nil, err
}

// loadPE reads and unpacks the checkpoint pe wrote at seq, checking that
// it holds a snapshot for every stateful operator of this PE (pe is this
// PE, or the same group of another channel, whose operators differ only in
// their channel suffix).
func (e *Engine) loadPE(pe string, seq uint64) (map[string][]byte, error) {
	var blob []byte
	var err error
	key := e.key(seq)
	key.PE = pe
	for attempt := 0; attempt < 3; attempt++ {
		if blob, err = e.rg.store.Get(e.ctx, key); err == nil || e.ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	states, err := DecodeCheckpoint(blob)
	if err != nil {
		return nil, err
	}
	if pe != e.opts.PE.Name {
		return states, nil
	}
	return states, e.checkOwn(states, seq)
}

// checkOwn checks that the PE's own checkpoint seq has a state for every
// stateful operator.
func (e *Engine) checkOwn(states map[string][]byte, seq uint64) error {
	for name := range e.rg.initial {
		if _, ok := states[name]; !ok {
			return fmt.Errorf("checkpoint %d has no state for operator %s", seq, name)
		}
	}
	return nil
}

// channelMetaKey is the checkpoint entry in which a channel PE records its
// channel and width. It cannot clash with an operator: operator names are
// DNS labels.
const channelMetaKey = "@channel"

// channelMeta is what a channel PE's checkpoint says of the channel.
type channelMeta struct {
	Region string `json:"region"`
	Index  int32  `json:"index"`
	Width  int32  `json:"width"`
}

// loadChannel rebuilds a channel PE's states for checkpoint seq. Channel
// 0 exists at every width and took part in every complete checkpoint, so
// its checkpoint says the width W the region had at seq (a checkpoint is
// self-describing: no status nor command has to carry its membership, and
// what was written cannot disagree with what is read). At the PE's own
// width the PE restores its own checkpoint. Otherwise it reads the same
// group's checkpoint of channels 0..W-1 and each stateful operator
// rebuilds its state from its copies in all of them
// (operators.Redistributor): keyed state by Port(key, width), the rest by
// the merge rules of docs/parallel-regions.md.
func (e *Engine) loadChannel(seq uint64, ch *peconfig.Channel, width int32) (map[string][]byte, []string, error) {
	pe := e.opts.PE
	peer := func(c int32) string { return app.ChannelPEName(pe.Job, ch.Region, c, int(ch.Group), int(ch.Groups)) }
	first, err := e.loadPE(peer(0), seq)
	if err != nil {
		return nil, nil, fmt.Errorf("channel 0 of checkpoint %d: %w", seq, err)
	}
	var meta channelMeta
	if b, ok := first[channelMetaKey]; ok {
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, nil, fmt.Errorf("checkpoint %d of %s: %w", seq, peer(0), err)
		}
	}
	if meta.Width == 0 || width == 0 || meta.Width == width {
		if ch.Index == 0 {
			return first, nil, e.checkOwn(first, seq)
		}
		states, err := e.loadPE(pe.Name, seq)
		return states, nil, err
	}
	all := make([]map[string][]byte, meta.Width)
	all[0] = first
	for c := int32(1); c < meta.Width; c++ {
		if all[c], err = e.loadPE(peer(c), seq); err != nil {
			return nil, nil, fmt.Errorf("channel %d of checkpoint %d: %w", c, seq, err)
		}
	}
	var orphans []string
	if ch.Index == 0 {
		for c := width; c < meta.Width; c++ {
			orphans = append(orphans, peer(c))
		}
	}
	out := map[string][]byte{}
	for _, n := range e.nodes {
		if _, ok := n.op.(operators.Stateful); !ok {
			continue
		}
		r, ok := n.op.(operators.Redistributor)
		if !ok {
			return nil, nil, fmt.Errorf("operator %s (%s) cannot move its state to another width", n.name, n.kind)
		}
		logical, ok := ch.Operators[n.name]
		if !ok {
			return nil, nil, fmt.Errorf("operator %s: the PE config does not say which operator it copies", n.name)
		}
		rd := operators.Redistribution{Channel: int(ch.Index), Width: int(width), ByKey: ch.PartitionBy != "roundRobin",
			RestoreSeq: seq}
		for c := range all {
			b, ok := all[c][app.ChannelOperator(logical, int32(c))]
			if !ok {
				return nil, nil, fmt.Errorf("checkpoint %d of %s has no state for %s", seq, peer(int32(c)), app.ChannelOperator(logical, int32(c)))
			}
			rd.Parts = append(rd.Parts, b)
		}
		if out[n.name], err = r.Redistribute(rd); err != nil {
			return nil, nil, err
		}
	}
	e.log.Info("reset: state redistributed", "region", e.rg.name, "seq", seq, "fromWidth", meta.Width, "toWidth", width,
		"channel", ch.Index)
	return out, orphans, nil
}

// loadOwnOrInitial is a channel's restore without redistribution (the
// control of the tests): its own checkpoint, or the initial state if it
// has none.
func (e *Engine) loadOwnOrInitial(seq uint64) (map[string][]byte, error) {
	states, err := e.loadPE(e.opts.PE.Name, seq)
	if err != nil {
		e.log.Warn("reset without redistribution: no own checkpoint, initial state", "seq", seq, "err", err)
		return e.rg.initial, nil
	}
	return states, nil
}

// drain starts checkpoint cmd.CurrentSeq at this PE's sources. Called
// with the lock held, so each source stops at a tuple boundary.
func (e *Engine) drain(cmd regionctl.Command) {
	rg := e.rg
	seq := uint64(max(cmd.CurrentSeq, 0))
	if uint64(max(cmd.Epoch, 0)) != e.epoch || seq <= rg.marked {
		return
	}
	rg.marked = seq
	rg.setPaused(true)
	rg.progress.DrainRequested = false
	e.now = time.Now().UnixNano()
	for _, n := range e.nodes {
		if n.needed == 0 {
			n.hold = false
			e.snapshotNode(n, seq)
		}
	}
	e.flush()
}

// markerIn counts marker seq arriving at n on one of its input streams;
// with the last of them n takes its snapshot. Called with the lock held.
func (e *Engine) markerIn(n *node, seq uint64) {
	if seq < n.markSeq {
		return // from a drain that a later one replaced
	}
	if seq > n.markSeq {
		n.markSeq, n.markCount = seq, 0
	}
	n.markCount++
	if n.markCount == n.needed {
		e.snapshotNode(n, seq)
	}
}

// snapshotNode records n's state for checkpoint seq and forwards the
// marker on every output; the PE's checkpoint is written once every
// operator has taken its snapshot.
func (e *Engine) snapshotNode(n *node, seq uint64) {
	rg := e.rg
	if seq < rg.drainSeq {
		return
	}
	if seq > rg.drainSeq {
		rg.drainSeq, rg.snaps, rg.snapped = seq, map[string][]byte{}, 0
	}
	if s, ok := n.op.(operators.Stateful); ok {
		b, err := s.Snapshot()
		if err != nil {
			// The checkpoint stays incomplete; the drain times out and
			// the region resets.
			e.log.Error("snapshot failed", "operator", n.name, "seq", seq, "err", err)
			return
		}
		rg.snaps[n.name] = b
	}
	rg.snapped++
	for _, ds := range n.outs {
		for i := range ds {
			if w := ds[i].w; w != nil {
				w.Marker(seq)
			} else {
				e.markerIn(ds[i].node, seq)
			}
		}
	}
	// The markers above may have completed the checkpoint already, through
	// the operators fused downstream (their snapshots run inside this
	// call): it is written once, by the innermost call, which leaves snaps
	// nil. Writing it again here would replace it with an empty one.
	if rg.snaps != nil && rg.snapped == len(e.nodes) {
		if ch := e.opts.PE.Channel; ch != nil {
			rg.snaps[channelMetaKey], _ = json.Marshal(channelMeta{Region: ch.Region, Index: ch.Index, Width: rg.width})
		}
		rg.jobs = append(rg.jobs, storeJob{seq: seq, blob: EncodeCheckpoint(rg.snaps)})
		rg.snaps = nil
		signal(rg.work)
	}
}

// healthy resumes the sources once the checkpoint they drained for is
// complete, and prunes older checkpoints.
func (e *Engine) healthy(cmd regionctl.Command) {
	rg := e.rg
	if uint64(max(cmd.Epoch, 0)) != e.epoch {
		return
	}
	done := uint64(max(cmd.LastCompletedSeq, 0))
	if done >= rg.marked {
		rg.setPaused(false)
	}
	if done > rg.pruned {
		rg.pruned = done
		rg.jobs = append(rg.jobs, storeJob{seq: done, prune: true})
		signal(rg.work)
	}
	if len(rg.orphans) > 0 && done > rg.orphansAt {
		// Every checkpoint of a removed channel is at most the abandoned
		// drain after orphansAt, so at most done; a channel of that name
		// created again by a wider width writes only above done.
		for _, pe := range rg.orphans {
			rg.jobs = append(rg.jobs, storeJob{seq: done + 1, prune: true, pe: pe})
		}
		e.log.Info("pruning checkpoints of removed channels", "region", rg.name, "pes", rg.orphans, "upTo", done)
		rg.orphans = nil
		signal(rg.work)
	}
}

// Marker is a checkpoint marker that arrived on an input stream.
func (e *Engine) Marker(l transport.Link, seq uint64) {
	r, ok := e.inputs[l.Port]
	if !ok || e.rg == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Epoch != e.epoch {
		return
	}
	e.now = time.Now().UnixNano()
	e.markerIn(r.node, seq)
	e.flush()
}

// storeLoop writes checkpoints and prunes, off the engine's lock.
func (e *Engine) storeLoop() {
	defer e.wg.Done()
	rg := e.rg
	pe := e.opts.PE
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-rg.work:
		}
		e.mu.Lock()
		jobs := rg.jobs
		rg.jobs = nil
		e.mu.Unlock()
		for _, j := range jobs {
			if j.prune {
				of := cmp.Or(j.pe, pe.Name)
				if _, err := rg.store.Prune(e.ctx, pe.Namespace, pe.Job, rg.name, of, j.seq); err != nil && e.ctx.Err() == nil {
					e.log.Warn("pruning checkpoints", "region", rg.name, "pe", of, "below", j.seq, "err", err)
				}
				continue
			}
			if err := rg.store.Put(e.ctx, e.key(j.seq), j.blob); err != nil {
				// Not reported: the drain times out and the region resets.
				if e.ctx.Err() == nil {
					e.log.Error("writing checkpoint", "region", rg.name, "seq", j.seq, "err", err)
				}
				continue
			}
			e.mu.Lock()
			if int64(j.seq) > rg.progress.Checkpointed {
				rg.progress.Checkpointed, rg.progress.Bytes = int64(j.seq), int64(len(j.blob))
				signal(rg.report)
			}
			e.mu.Unlock()
			e.log.Info("checkpoint written", "region", rg.name, "seq", j.seq, "bytes", len(j.blob))
		}
	}
}

// reportLoop publishes the latest progress, retrying failures, off the
// engine's lock.
func (e *Engine) reportLoop() {
	defer e.wg.Done()
	rg := e.rg
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-rg.report:
		}
		for {
			e.mu.Lock()
			p := rg.progress
			e.mu.Unlock()
			err := rg.ctrl.Report(e.ctx, p)
			if err == nil || e.ctx.Err() != nil {
				break
			}
			e.log.Warn("reporting region progress", "region", rg.name, "err", err)
			select {
			case <-e.ctx.Done():
				return
			case <-rg.report:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// runRegionSource drives a source of a region: its steps wait while the
// region holds the sources, and when it has emitted its count it ends its
// streams and waits, since a reset may move it back and run it again.
func (e *Engine) runRegionSource(ctx context.Context, n *node) {
	defer e.srcWG.Done()
	rg := e.rg
	var every uint64
	if n.src != nil {
		every = n.src.CheckpointEvery()
	}
	do := func(f func()) bool {
		e.mu.Lock()
		if rg.paused || n.hold {
			ch := rg.wake
			e.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
			}
			return false
		}
		e.now = time.Now().UnixNano()
		f()
		if every > 0 {
			// Operator-driven trigger: ask for a checkpoint at every
			// multiple and hold until the drain arrives.
			if seq := n.src.Seq(); seq%every == 0 && seq != n.lastAsk {
				n.lastAsk, n.hold = seq, true
				rg.progress.DrainRequested = true
				signal(rg.report)
			}
		}
		e.publish()
		e.mu.Unlock()
		return true
	}
	flush := func() {
		e.mu.Lock()
		e.flush()
		e.mu.Unlock()
	}
	run := n.op.(operators.Runner)
	for {
		err := run.Run(ctx, do, flush)
		flush()
		if err != nil {
			return
		}
		e.mu.Lock()
		if n.src != nil && !n.src.Done() {
			e.mu.Unlock() // a reset moved it back meanwhile
			continue
		}
		if rg.paused || n.hold {
			// Nothing leaves a held source, not even the end of its
			// streams: after a marker a stream carries nothing more until
			// the region is Healthy again.
			ch := rg.wake
			e.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !n.finished {
			e.log.Info("source finished", "operator", n.name, "epoch", e.epoch)
			e.finish(n)
			e.flush()
		}
		ch := rg.resetCh
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Kill stops the PE at once, as a crash would: nothing is flushed, queued
// output is dropped, connections are closed.
func (e *Engine) Kill() {
	if e.ctx == nil {
		return
	}
	e.srcCancel()
	for _, w := range e.writers {
		w.Abort()
	}
	e.cancel()
	e.server.Close()
	e.srcWG.Wait()
	e.wg.Wait()
}
