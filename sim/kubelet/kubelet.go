// Package kubelet models the kubelet and container runtime of one node: pod
// start-up (sandbox, image pull when the image is absent, containers started
// in order), pod IP, phase and container statuses, readiness through the
// readiness probe's timing with a pluggable outcome, container failures with
// the restart policy and crash-loop back-off, graceful termination and the
// final deletion of the pod object, a node that stops and starts, and the
// CPU each pod gets when the node is oversubscribed.
package kubelet

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// ReadyCheck is the outcome of a readiness probe of a container: the
// experiment or the data-plane model decides (a PE is ready when its TCP
// connections are up). It is asked at each probe, in virtual time.
type ReadyCheck func(pod *corev1.Pod, container string) bool

type ctrPhase int

const (
	ctrWaiting ctrPhase = iota
	ctrRunning
	ctrTerminated
)

type container struct {
	spec       corev1.Container
	phase      ctrPhase
	reason     string // waiting or terminated reason
	message    string
	exitCode   int32
	startedAt  time.Duration
	finishedAt time.Duration
	restarts   int32
	last       *corev1.ContainerStateTerminated
	ready      bool
	successes  int32
	failures   int32
	probe      *engine.Timer
	started    bool // has run at least once
}

type podState struct {
	pod         *corev1.Pod
	epoch       int // bumped whenever pending callbacks must be dropped
	sandbox     bool
	ip          string
	ctrs        []*container
	terminating bool
	terminal    corev1.PodPhase // Succeeded/Failed once the pod is done
	startedAt   time.Duration
	timers      []*engine.Timer
	// weight and limit are the pod's cpu.shares and CFS quota in cores
	// (-1: none), fixed for the pod's life.
	weight, limit float64
}

func newPodState(pod *corev1.Pod) *podState {
	ps := &podState{pod: pod, limit: -1}
	var req, lim int64
	limited := len(pod.Spec.Containers) > 0
	for _, c := range pod.Spec.Containers {
		req += c.Resources.Requests.Cpu().MilliValue()
		if l, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			lim += l.MilliValue()
		} else {
			limited = false
		}
	}
	ps.weight = Shares(req)
	if limited {
		ps.limit = float64(lim) / 1000
	}
	return ps
}

// Kubelet is the model of one node's kubelet.
type Kubelet struct {
	e    *engine.Engine
	api  *apiserver.Server
	c    client.Client
	p    Params
	node string
	idx  int

	up      bool
	pods    map[types.NamespacedName]*podState
	order   []types.NamespacedName
	backoff *Backoff
	images  map[string]bool
	pulls   map[string][]func()
	// pullFree is when the node's image puller is free (serialized pulls).
	pullFree time.Duration
	// plegPhase places the node's PLEG relist ticks.
	plegPhase time.Duration
	ips       map[int]bool

	// CPU is the node's cpu capacity in cores, shared by its pods.
	CPU float64
	// Ready decides readiness probe outcomes; nil means always ready.
	Ready ReadyCheck
	// ReadyHold, if set, is how long the container's readiness endpoint
	// waits to become ready before answering no (a PE's /readyz?hold=);
	// while held, Ready is asked again every ReadyPoll.
	ReadyHold func(pod *corev1.Pod, container string) time.Duration
	ReadyPoll time.Duration
	// Demand, if set, is how many cores a running pod would use if it could
	// (the data plane's view); nil or a negative value means as many as it can get.
	Demand func(key types.NamespacedName) float64
	// ImageSize gives an image's size in bytes; nil or 0 means the default.
	ImageSize func(image string) int64
	// OnRunning and OnStopped tell other models (network, data plane) that
	// a pod's containers all run, or that one stopped.
	OnRunning func(pod *corev1.Pod)
	OnStopped func(key types.NamespacedName)
}

// Config names the node a kubelet serves.
type Config struct {
	Node string
	// Index numbers the node in the cluster; its pod CIDR is prefix.Index.0/24.
	Index int
	// CPU is the node's capacity in cores.
	CPU float64
	// Images are already present on the node (kind load docker-image).
	Images []string
}

// New starts the kubelet of one node, running.
func New(api *apiserver.Server, p Params, cfg Config) *Kubelet {
	k := &Kubelet{
		e: api.Engine(), api: api, c: api.Client("system:node:" + cfg.Node), p: p,
		node: cfg.Node, idx: cfg.Index, CPU: cfg.CPU, up: true,
		pods:    map[types.NamespacedName]*podState{},
		backoff: NewBackoff(p.BackoffInitial.D(), p.BackoffMax.D()),
		images:  map[string]bool{},
		pulls:   map[string][]func(){},
		ips:     map[int]bool{},
	}
	for _, im := range cfg.Images {
		k.images[im] = true
	}
	k.plegPhase = time.Duration(k.e.Rand().Float64() * float64(p.PLEGRelistPeriod.D()))
	// Only this node's pods, as the kubelet's spec.nodeName field selector.
	api.WatchPodsOn(cfg.Node, func(ev apiserver.WatchEvent) {
		k.onPod(ev.Type, ev.Object.(*corev1.Pod))
	})
	return k
}

// Node is the node's name.
func (k *Kubelet) Node() string { return k.node }

// Running reports whether the node (and so the kubelet) is up.
func (k *Kubelet) Running() bool { return k.up }

// HasImage reports whether an image is present on the node.
func (k *Kubelet) HasImage(image string) bool { return k.images[image] }

func (k *Kubelet) jitter(d time.Duration) time.Duration {
	if j := k.p.StartJitter; j > 0 && d > 0 {
		return time.Duration(float64(d) * (1 + j*(2*k.e.Rand().Float64()-1)))
	}
	return d
}

// after schedules fn for the pod unless the pod's epoch moved on meanwhile.
func (k *Kubelet) after(ps *podState, d time.Duration, fn func()) {
	epoch := ps.epoch
	t := k.e.After(d, func() {
		if k.up && ps.epoch == epoch && k.pods[client.ObjectKeyFromObject(ps.pod)] == ps {
			fn()
		}
	})
	ps.timers = append(ps.timers, t)
}

func (k *Kubelet) cancel(ps *podState) {
	ps.epoch++
	for _, t := range ps.timers {
		t.Stop()
	}
	ps.timers = nil
	for _, c := range ps.ctrs {
		if c.probe != nil {
			c.probe.Stop()
			c.probe = nil
		}
	}
}

func (k *Kubelet) onPod(typ watch.EventType, pod *corev1.Pod) {
	key := client.ObjectKeyFromObject(pod)
	ps := k.pods[key]
	if ps != nil && ps.pod.UID != pod.UID {
		k.forget(key, ps)
		ps = nil
	}
	if typ == watch.Deleted {
		if ps != nil {
			k.forget(key, ps)
		}
		return
	}
	if !k.up {
		return // a stopped node sees nothing; Start resyncs
	}
	if ps == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return
		}
		ps = newPodState(pod)
		k.pods[key] = ps
		k.order = nil
		for _, c := range pod.Spec.Containers {
			ps.ctrs = append(ps.ctrs, &container{spec: c, reason: "ContainerCreating"})
		}
		if pod.DeletionTimestamp != nil {
			k.terminate(ps)
			return
		}
		k.admit(ps)
		return
	}
	ps.pod = pod
	if pod.DeletionTimestamp != nil && !ps.terminating {
		k.terminate(ps)
	}
}

func (k *Kubelet) forget(key types.NamespacedName, ps *podState) {
	k.cancel(ps)
	k.releaseIP(ps)
	for _, c := range ps.ctrs {
		k.backoff.Forget(ctrKey(ps.pod, c.spec.Name))
	}
	delete(k.pods, key)
	k.order = nil
	if k.OnStopped != nil {
		k.OnStopped(key)
	}
}

func ctrKey(pod *corev1.Pod, name string) string {
	return string(pod.UID) + "/" + name
}

// admit writes the first status (Pending, containers creating) and starts
// the pod's sandbox.
func (k *Kubelet) admit(ps *podState) {
	ps.startedAt = k.e.Now()
	k.writeStatus(ps)
	for _, c := range ps.ctrs {
		if c.spec.ReadinessProbe != nil {
			k.startProbe(ps, c)
		}
	}
	k.mountVolumes(ps, k.p.MountRetryInitial.D(), func() {
		k.after(ps, k.jitter(k.p.SandboxCreate.D()), func() {
			ps.sandbox = true
			ps.ip = k.allocIP(ps)
			k.writeStatus(ps)
			k.startContainer(ps, 0)
		})
	})
}

// mountVolumes waits until every ConfigMap and Secret volume of the pod can
// be set up: the kubelet starts nothing of a pod before its volumes are
// mounted, and retries a failed mount with exponential back-off.
func (k *Kubelet) mountVolumes(ps *podState, retry time.Duration, then func()) {
	if missing := k.missingVolume(ps.pod); missing != "" {
		k.after(ps, retry, func() {
			k.mountVolumes(ps, min(2*retry, k.p.MountRetryMax.D()), then)
		})
		return
	}
	k.after(ps, k.p.VolumeSetup.D(), then)
}

func (k *Kubelet) missingVolume(pod *corev1.Pod) string {
	ctx := context.Background()
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional):
			var cm corev1.ConfigMap
			if err := k.c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: v.ConfigMap.Name}, &cm); err != nil {
				return "configmap/" + v.ConfigMap.Name
			}
		case v.Secret != nil && (v.Secret.Optional == nil || !*v.Secret.Optional):
			var sec corev1.Secret
			if err := k.c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: v.Secret.SecretName}, &sec); err != nil {
				return "secret/" + v.Secret.SecretName
			}
		}
	}
	return ""
}

func (k *Kubelet) allocIP(ps *podState) string {
	for h := 2; h < 255; h++ {
		if !k.ips[h] {
			k.ips[h] = true
			return fmt.Sprintf("%s.%d.%d", k.p.PodCIDRPrefix, k.idx+1, h)
		}
	}
	return ""
}

func (k *Kubelet) releaseIP(ps *podState) {
	if ps.ip == "" {
		return
	}
	var subnet, host int
	if _, err := fmt.Sscanf(ps.ip[len(k.p.PodCIDRPrefix)+1:], "%d.%d", &subnet, &host); err == nil {
		delete(k.ips, host)
	}
	ps.ip = ""
}

// startContainer pulls the image of container i if needed, starts it, and
// goes on with the next one, as the kubelet starts containers in order.
func (k *Kubelet) startContainer(ps *podState, i int) {
	if i >= len(ps.ctrs) {
		return
	}
	c := ps.ctrs[i]
	k.ensureImage(ps, c.spec, func() {
		k.after(ps, k.jitter(k.p.ContainerStart.D()), func() {
			k.run(ps, c)
			k.startContainer(ps, i+1)
		})
	})
}

func (k *Kubelet) ensureImage(ps *podState, spec corev1.Container, then func()) {
	im := spec.Image
	if k.images[im] && spec.ImagePullPolicy != corev1.PullAlways {
		then()
		return
	}
	epoch := ps.epoch
	done := func() {
		if k.up && ps.epoch == epoch {
			then()
		}
	}
	if waiting, ok := k.pulls[im]; ok {
		k.pulls[im] = append(waiting, done)
		return
	}
	k.pulls[im] = []func(){done}
	size := k.p.DefaultImageSize
	if k.ImageSize != nil {
		if s := k.ImageSize(im); s > 0 {
			size = s
		}
	}
	d := k.jitter(k.p.ImagePullOverhead.D()) + time.Duration(float64(size)/k.p.ImagePullBandwidth*float64(time.Second))
	if k.p.SerializeImagePulls {
		// One pull at a time per node: this one starts when the last ends.
		d += max(0, k.pullFree-k.e.Now())
		k.pullFree = k.e.Now() + d
	}
	k.e.After(d, func() {
		waiting := k.pulls[im]
		delete(k.pulls, im)
		if !k.up {
			return
		}
		k.images[im] = true
		for _, f := range waiting {
			f()
		}
	})
}

func (k *Kubelet) run(ps *podState, c *container) {
	if c.started {
		c.restarts++
	}
	c.started = true
	c.phase = ctrRunning
	c.reason, c.message = "", ""
	c.startedAt = k.e.Now()
	c.ready = false
	c.successes, c.failures = 0, 0
	c.ready = c.spec.ReadinessProbe == nil
	k.writeStatus(ps)
	if k.allRunning(ps) && k.OnRunning != nil {
		k.OnRunning(ps.pod)
	}
}

func (k *Kubelet) allRunning(ps *podState) bool {
	for _, c := range ps.ctrs {
		if c.phase != ctrRunning {
			return false
		}
	}
	return true
}

// startProbe runs the readiness prober worker of a container. As in the
// kubelet, the worker is created when the pod is admitted and ticks every
// period from then on, so its phase is the pod's, not the container's: a
// tick does nothing while the container is not running or is younger than
// initialDelaySeconds; successThreshold consecutive successes make it
// ready, failureThreshold consecutive failures not ready. The worker lives
// across container restarts.
func (k *Kubelet) startProbe(ps *podState, c *container) {
	pr := c.spec.ReadinessProbe
	period := time.Duration(pr.PeriodSeconds) * time.Second
	if period <= 0 {
		period = k.p.ProbePeriod.D()
	}
	succ, fail := pr.SuccessThreshold, pr.FailureThreshold
	if succ <= 0 {
		succ = k.p.ProbeSuccessThreshold
	}
	if fail <= 0 {
		fail = k.p.ProbeFailureThreshold
	}
	delay := time.Duration(pr.InitialDelaySeconds) * time.Second
	epoch := ps.epoch
	var tick func()
	ready := func() bool { return k.Ready == nil || k.Ready(ps.pod, c.spec.Name) }
	// decide counts one probe outcome toward the thresholds.
	decide := func(ok bool) {
		changed := false
		if ok {
			c.failures = 0
			c.successes++
			if !c.ready && c.successes >= succ {
				c.ready, changed = true, true
			}
		} else {
			c.successes = 0
			c.failures++
			if c.ready && c.failures >= fail {
				c.ready, changed = false, true
			}
		}
		if changed {
			k.writeStatus(ps)
		}
	}
	tick = func() {
		c.probe = nil
		if !k.up || ps.epoch != epoch {
			return
		}
		if c.phase == ctrRunning && k.e.Now()-c.startedAt >= delay {
			ok := ready()
			var hold time.Duration
			if !ok && k.ReadyHold != nil && k.ReadyPoll > 0 {
				hold = k.ReadyHold(ps.pod, c.spec.Name)
			}
			if hold <= 0 {
				decide(ok)
				c.probe = k.e.After(period, tick)
				return
			}
			// A held answer: the prober's next tick stays on its period
			// (the kubelet's ticker), the outcome comes when the
			// endpoint answers.
			start := k.e.Now()
			var poll func()
			poll = func() {
				c.probe = nil
				if !k.up || ps.epoch != epoch {
					return
				}
				ok := c.phase == ctrRunning && ready()
				if ok || c.phase != ctrRunning || k.e.Now()-start+k.ReadyPoll > hold {
					decide(ok)
					c.probe = k.e.After(max(0, start+period-k.e.Now()), tick)
					return
				}
				c.probe = k.e.After(k.ReadyPoll, poll)
			}
			c.probe = k.e.After(k.ReadyPoll, poll)
			return
		}
		c.probe = k.e.After(period, tick)
	}
	c.probe = k.e.After(0, tick)
}

// Kill makes a container of a pod on this node exit with the given code, as
// a crash or an OOM kill would. It reports whether the container was running.
func (k *Kubelet) Kill(key types.NamespacedName, name string, exitCode int32) bool {
	ps := k.pods[key]
	if ps == nil || !k.up || ps.terminating {
		return false
	}
	for _, c := range ps.ctrs {
		if c.spec.Name == name && c.phase == ctrRunning {
			k.exited(ps, c, exitCode)
			return true
		}
	}
	return false
}

func (k *Kubelet) exited(ps *podState, c *container, code int32) {
	c.phase = ctrTerminated
	c.exitCode = code
	c.finishedAt = k.e.Now()
	c.ready = false
	c.reason = "Completed"
	if code != 0 {
		c.reason = "Error"
	}
	c.last = &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: c.reason,
		StartedAt: k.meta(c.startedAt), FinishedAt: k.meta(c.finishedAt),
	}
	if k.OnStopped != nil {
		k.OnStopped(client.ObjectKeyFromObject(ps.pod))
	}
	// The kubelet learns of the exit at its next PLEG relist.
	k.after(ps, k.plegDelay(), func() { k.handleExit(ps, c, code) })
}

// plegDelay is the time to the kubelet's next PLEG relist.
func (k *Kubelet) plegDelay() time.Duration {
	period := k.p.PLEGRelistPeriod.D()
	if period <= 0 {
		return 0
	}
	since := (k.e.Now() - k.plegPhase) % period
	if since < 0 {
		since += period
	}
	if since == 0 {
		return 0
	}
	return period - since
}

func (k *Kubelet) handleExit(ps *podState, c *container, code int32) {
	policy := ps.pod.Spec.RestartPolicy
	restart := policy == corev1.RestartPolicyAlways || policy == "" || (policy == corev1.RestartPolicyOnFailure && code != 0)
	if !restart {
		k.maybeTerminal(ps)
		k.writeStatus(ps)
		return
	}
	key := ctrKey(ps.pod, c.spec.Name)
	delay := k.backoff.Delay(key, c.finishedAt, k.e.Now())
	if delay > 0 {
		c.phase = ctrWaiting
		c.reason = "CrashLoopBackOff"
		c.message = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
			k.backoff.Current(key), c.spec.Name, ps.pod.Name, ps.pod.Namespace, ps.pod.UID)
	}
	k.writeStatus(ps)
	finished := c.finishedAt
	k.after(ps, delay, func() {
		k.backoff.Restarted(key, finished)
		k.after(ps, k.jitter(k.p.ContainerStart.D()), func() { k.run(ps, c) })
	})
}

// maybeTerminal sets the pod's phase once no container runs or will run.
func (k *Kubelet) maybeTerminal(ps *podState) {
	failed := false
	for _, c := range ps.ctrs {
		if c.phase != ctrTerminated {
			return
		}
		if c.exitCode != 0 {
			failed = true
		}
	}
	ps.terminal = corev1.PodSucceeded
	if failed {
		ps.terminal = corev1.PodFailed
	}
}

// terminate runs graceful termination: every running container gets SIGTERM
// and exits after the runtime's sigtermExit or is killed at the end of the
// grace period; then the sandbox is torn down, the terminal status written
// and the pod object deleted for good.
func (k *Kubelet) terminate(ps *podState) {
	ps.terminating = true
	grace := 30 * time.Second
	if g := ps.pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	} else if g := ps.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	// Pending start-up work is abandoned.
	k.cancel(ps)
	exit := k.p.SigtermExit.D()
	code := int32(0)
	if exit > grace {
		exit, code = grace, 137 // SIGKILL at the end of the grace period
	}
	k.after(ps, exit, func() {
		for _, c := range ps.ctrs {
			if c.phase == ctrRunning {
				c.phase = ctrTerminated
				c.exitCode = code
				c.reason = "Completed"
				if code != 0 {
					c.reason = "Error"
				}
				c.finishedAt = k.e.Now()
				c.ready = false
			} else if c.phase == ctrWaiting {
				c.phase = ctrTerminated
				c.reason = "ContainerStatusUnknown"
				c.exitCode = 137
				c.finishedAt = k.e.Now()
			}
		}
		if k.OnStopped != nil {
			k.OnStopped(client.ObjectKeyFromObject(ps.pod))
		}
		k.after(ps, k.p.SandboxStop.D(), func() { k.finish(ps) })
	})
}

func (k *Kubelet) finish(ps *podState) {
	ps.sandbox = false
	k.maybeTerminal(ps)
	k.writeStatus(ps)
	key := client.ObjectKeyFromObject(ps.pod)
	zero := int64(0)
	uid := ps.pod.UID
	var cur corev1.Pod
	if err := k.c.Get(context.Background(), key, &cur); err == nil && cur.UID == uid {
		_ = k.c.Delete(context.Background(), &cur, &client.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	}
	k.forget(key, ps)
}

func (k *Kubelet) meta(t time.Duration) metav1.Time {
	return metav1.NewTime(k.api.Clock().Epoch().Add(t).Truncate(time.Second))
}

// writeStatus replaces the pod's status with the kubelet's view.
func (k *Kubelet) writeStatus(ps *podState) {
	ctx := context.Background()
	var cur corev1.Pod
	if err := k.c.Get(ctx, client.ObjectKeyFromObject(ps.pod), &cur); err != nil || cur.UID != ps.pod.UID {
		return
	}
	st := k.status(ps, &cur.Status)
	cur.Status = st
	if err := k.c.Status().Update(ctx, &cur); err != nil && !apierrors.IsNotFound(err) {
		// The direct client does not race; a failure here is a model bug.
		panic(fmt.Sprintf("kubelet %s: status update of %s: %v", k.node, cur.Name, err))
	}
	ps.pod.Status = st
}

func (k *Kubelet) status(ps *podState, old *corev1.PodStatus) corev1.PodStatus {
	now := k.meta(k.e.Now())
	st := corev1.PodStatus{
		HostIP:   k.nodeIP(),
		PodIP:    ps.ip,
		QOSClass: old.QOSClass,
	}
	if st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	if ps.ip != "" {
		st.PodIPs = []corev1.PodIP{{IP: ps.ip}}
	}
	start := k.meta(ps.startedAt)
	st.StartTime = &start
	allReady, anyRunning := true, false
	for _, c := range ps.ctrs {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: c.spec.Image,
			RestartCount: c.restarts, Ready: c.ready && c.phase == ctrRunning,
		}
		started := c.phase == ctrRunning
		cs.Started = &started
		if c.last != nil && (c.phase != ctrTerminated || c.restarts > 0) {
			cs.LastTerminationState.Terminated = c.last.DeepCopy()
		}
		switch c.phase {
		case ctrWaiting:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.reason, Message: c.message}
		case ctrRunning:
			anyRunning = true
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: k.meta(c.startedAt)}
			cs.ContainerID = fmt.Sprintf("containerd://%s-%s-%d", ps.pod.UID, c.spec.Name, c.restarts)
		case ctrTerminated:
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: c.exitCode, Reason: c.reason, StartedAt: k.meta(c.startedAt), FinishedAt: k.meta(c.finishedAt),
			}
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case ps.terminal != "":
		st.Phase = ps.terminal
	case anyRunning || k.anyStarted(ps):
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
			reason = ""
		}
		c := corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == s {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	ready := allReady && ps.terminal == "" && !ps.terminating
	cond(corev1.PodReadyToStartContainers, ps.sandbox, "")
	cond(corev1.PodInitialized, true, "")
	cond(corev1.ContainersReady, ready, "ContainersNotReady")
	cond(corev1.PodReady, ready, "ContainersNotReady")
	// Conditions the kubelet does not own are kept; of PodScheduled, the
	// latest (the binding's) wins.
	var sched *corev1.PodCondition
	for i := range old.Conditions {
		if old.Conditions[i].Type == corev1.PodScheduled {
			sched = &old.Conditions[i]
		}
	}
	if sched != nil {
		st.Conditions = append(st.Conditions, *sched)
	}
	sort.SliceStable(st.Conditions, func(i, j int) bool { return condOrder(st.Conditions[i].Type) < condOrder(st.Conditions[j].Type) })
	return st
}

func condOrder(t corev1.PodConditionType) int {
	switch t {
	case corev1.PodReadyToStartContainers:
		return 0
	case corev1.PodInitialized:
		return 1
	case corev1.PodReady:
		return 2
	case corev1.ContainersReady:
		return 3
	}
	return 4
}

// anyStarted: a pod whose containers have run stays Running while one
// restarts (the API's phase rule: at least one container running or
// restarting).
func (k *Kubelet) anyStarted(ps *podState) bool {
	for _, c := range ps.ctrs {
		if c.started {
			return true
		}
	}
	return false
}

func (k *Kubelet) nodeIP() string {
	return fmt.Sprintf("172.18.0.%d", k.idx+2)
}

// PodIP is the IP of a pod on this node, empty if it has none.
func (k *Kubelet) PodIP(key types.NamespacedName) string {
	if ps := k.pods[key]; ps != nil {
		return ps.ip
	}
	return ""
}

// IsRunning reports whether all containers of a pod on this node run.
func (k *Kubelet) IsRunning(key types.NamespacedName) bool {
	ps := k.pods[key]
	return ps != nil && k.up && !ps.terminating && k.allRunning(ps)
}

// Restarts is the sum of a pod's container restart counts.
func (k *Kubelet) Restarts(key types.NamespacedName) int32 {
	var n int32
	if ps := k.pods[key]; ps != nil {
		for _, c := range ps.ctrs {
			n += c.restarts
		}
	}
	return n
}

// Pods lists the pods the kubelet runs, sorted.
func (k *Kubelet) Pods() []types.NamespacedName {
	return append([]types.NamespacedName(nil), k.sortedPods()...)
}

// sortedPods is the cached sorted list of pod keys (rebuilt after a change).
func (k *Kubelet) sortedPods() []types.NamespacedName {
	if k.order == nil {
		k.order = make([]types.NamespacedName, 0, len(k.pods))
		for key := range k.pods {
			k.order = append(k.order, key)
		}
		sort.Slice(k.order, func(i, j int) bool {
			a, b := k.order[i], k.order[j]
			if a.Namespace != b.Namespace {
				return a.Namespace < b.Namespace
			}
			return a.Name < b.Name
		})
	}
	return k.order
}

// CPUShares is the CPU, in cores, each running pod on the node gets: CFS
// divides the node by cpu.shares (cpu requests) among the pods that want
// CPU, each bounded by its demand and cpu limit.
func (k *Kubelet) CPUShares() map[types.NamespacedName]float64 {
	return k.CPUSharesOf(k.CPU)
}

// CPUSharesOf is CPUShares when the node's pods may use only capacity
// cores in all (a kind node: a container that shares its host's cores with
// the other nodes).
func (k *Kubelet) CPUSharesOf(capacity float64) map[types.NamespacedName]float64 {
	keys, claims := k.claims()
	shares := WaterFill(capacity, claims)
	out := make(map[types.NamespacedName]float64, len(keys))
	for i, key := range keys {
		out[key] = shares[i]
	}
	return out
}

// Limit is a pod's CFS quota in cores, -1 for none or an unknown pod.
func (k *Kubelet) Limit(key types.NamespacedName) float64 {
	if ps := k.pods[key]; ps != nil {
		return ps.limit
	}
	return -1
}

// CPUDemand is the most CPU the node's running pods would use together,
// bounded by the node's capacity; -1 means they would take all of it.
func (k *Kubelet) CPUDemand() float64 {
	_, claims := k.claims()
	var sum float64
	for _, c := range claims {
		if c.Cap < 0 {
			return k.CPU
		}
		sum += c.Cap
	}
	return min(sum, k.CPU)
}

func (k *Kubelet) claims() ([]types.NamespacedName, []Claim) {
	var keys []types.NamespacedName
	var claims []Claim
	for _, key := range k.sortedPods() {
		if !k.IsRunning(key) {
			continue
		}
		ps := k.pods[key]
		capacity := ps.limit
		if k.Demand != nil {
			if d := k.Demand(key); d >= 0 && (capacity < 0 || d < capacity) {
				capacity = d
			}
		}
		keys = append(keys, key)
		claims = append(claims, Claim{Weight: ps.weight, Cap: capacity})
	}
	return keys, claims
}

// Stop powers the node off: containers die with it and the kubelet writes
// nothing until Start.
func (k *Kubelet) Stop() {
	if !k.up {
		return
	}
	k.up = false
	for _, key := range k.Pods() {
		ps := k.pods[key]
		k.cancel(ps)
		if k.OnStopped != nil {
			k.OnStopped(key)
		}
	}
}

// Start powers the node on again: the kubelet lists its pods, finishes the
// deletion of those being deleted, and starts the others afresh (new
// sandbox, containers restarted and counted as restarts; restartPolicy
// Never pods fail).
func (k *Kubelet) Start() {
	if k.up {
		return
	}
	k.up = true
	old := k.pods
	k.pods = map[types.NamespacedName]*podState{}
	k.order = nil
	k.ips = map[int]bool{}
	var list corev1.PodList
	_ = k.c.List(context.Background(), &list)
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.Spec.NodeName != k.node || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		key := client.ObjectKeyFromObject(pod)
		prev := old[key]
		ps := newPodState(pod)
		k.pods[key] = ps
		k.order = nil
		for _, spec := range pod.Spec.Containers {
			c := &container{spec: spec, reason: "ContainerCreating"}
			if prev != nil && prev.pod.UID == pod.UID {
				for _, pc := range prev.ctrs {
					if pc.spec.Name == spec.Name {
						c.restarts, c.started, c.last = pc.restarts, pc.started, pc.last
					}
				}
			}
			if c.started {
				c.phase = ctrTerminated
				c.exitCode = 255
				c.reason = "Unknown"
				c.finishedAt = k.e.Now()
			}
			ps.ctrs = append(ps.ctrs, c)
		}
		if pod.DeletionTimestamp != nil {
			ps.terminating = true
			k.after(ps, k.p.SandboxStop.D(), func() { k.finish(ps) })
			continue
		}
		if pod.Spec.RestartPolicy == corev1.RestartPolicyNever && k.anyStarted(ps) {
			ps.terminal = corev1.PodFailed
			k.writeStatus(ps)
			continue
		}
		for _, c := range ps.ctrs {
			if c.started {
				c.last = &corev1.ContainerStateTerminated{ExitCode: 255, Reason: "Unknown", FinishedAt: k.meta(k.e.Now())}
				c.phase = ctrWaiting
				c.reason = "ContainerCreating"
			}
		}
		k.admit(ps)
	}
}
