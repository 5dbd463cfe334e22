// Package hostcpu accounts for the CPU of the machine a kind cluster runs
// on: the host as a whole (/proc/stat), each node container (its cgroup),
// and inside a node each long-lived process by name (kubelet, containerd,
// its shims, systemd; with the CPU of the children they reaped: runc, CNI
// plugins) and each pod by its cgroup (the control plane's static pods,
// CoreDNS, PE processes). What is left of the host is CPU used outside
// the cluster: other work on the machine, which makes a measurement
// untrustworthy.
//
// Linux only; cgroup v1 (cpuacct) and v2 (cpu.stat) are both read.
package hostcpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Node is a node container: its name and its main process's PID on the
// host (docker inspect .State.Pid).
type Node struct {
	Name string
	PID  int
}

// Snapshot is the CPU used so far, in CPU-seconds, and the load averages.
type Snapshot struct {
	At   time.Time
	Load [3]float64
	// Host is the busy CPU time of every core since boot.
	Host float64
	// Self is this process's CPU time (the measuring harness).
	Self float64
	// Nodes is each node container's CPU time, by node name.
	Nodes map[string]float64
	// Parts is the CPU time of what runs inside the nodes, by
	// "node/process" or "node/pod/<uid>".
	Parts map[string]float64
	// Others is the CPU time of the host's processes outside the nodes,
	// by name, and SoftIRQ the kernel's softirq time (packets between
	// the nodes are handled there, charged to no container).
	Others  map[string]float64
	SoftIRQ float64
}

// Usage is what happened between two snapshots.
type Usage struct {
	Wall time.Duration `json:"wall"`
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages.
	LoadBefore [3]float64 `json:"loadBefore"`
	LoadAfter  [3]float64 `json:"loadAfter"`
	// Average cores busy: the host, the cluster's node containers, the
	// harness, and everything else (Outside = Host - Cluster - Self).
	Host    float64 `json:"hostCores"`
	Cluster float64 `json:"clusterCores"`
	Self    float64 `json:"harnessCores"`
	Outside float64 `json:"outsideCores"`
	// CPUSeconds of each part of the cluster (see Snapshot.Parts, pods
	// named by the caller's resolver), and "node/other" for what the
	// parts leave of a node (pods gone before the second snapshot,
	// short-lived processes whose parent left too).
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
	// OutsideSeconds are the host's processes outside the cluster that
	// used at least 10 ms, by name, and "softirq" the kernel's: what
	// Outside is made of (docker's and the kernel's share of running the
	// cluster is part of it).
	OutsideSeconds map[string]float64 `json:"outsideSeconds,omitempty"`
}

// ClockTick is the kernel's USER_HZ, the unit of /proc CPU times.
const ClockTick = 100

// Take reads the CPU counters of the host and of the nodes.
func Take(nodes []Node) (*Snapshot, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("hostcpu: Linux only")
	}
	s := &Snapshot{At: time.Now(), Nodes: map[string]float64{}, Parts: map[string]float64{}, Others: map[string]float64{}}
	var err error
	if s.Load, err = loadAvg(); err != nil {
		return nil, err
	}
	if s.Host, s.SoftIRQ, err = hostBusy(); err != nil {
		return nil, err
	}
	if s.Self, err = procCPU(os.Getpid(), false); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		dir, err := cgroupDir(n.PID)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if s.Nodes[n.Name], err = cgroupCPU(dir); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := s.readPods(n.Name, dir); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := s.readProcesses(n.Name, dir); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	s.readOthers(nodes)
	return s, nil
}

// Between is the usage from a to b; resolve names a pod by its UID (""
// keeps "pod/<uid>").
func Between(a, b *Snapshot, resolve func(uid string) string) Usage {
	wall := b.At.Sub(a.At)
	secs := wall.Seconds()
	u := Usage{Wall: wall, LoadBefore: a.Load, LoadAfter: b.Load, CPUSeconds: map[string]float64{}}
	if secs <= 0 {
		return u
	}
	var cluster float64
	for n, v := range b.Nodes {
		d := v - a.Nodes[n]
		cluster += d
		inside := 0.0
		for k, pv := range b.Parts {
			if !strings.HasPrefix(k, n+"/") {
				continue
			}
			pd := pv - a.Parts[k] // a part new since a started from 0
			if pd <= 0 {
				continue
			}
			inside += pd
			name := k
			if uid, ok := strings.CutPrefix(k, n+"/pod/"); ok && resolve != nil {
				if r := resolve(uid); r != "" {
					name = n + "/" + r
				}
			}
			u.CPUSeconds[name] += pd
		}
		if rest := d - inside; rest > 0.005 {
			u.CPUSeconds[n+"/other"] = rest
		}
	}
	u.OutsideSeconds = map[string]float64{}
	for k, v := range b.Others {
		if d := v - a.Others[k]; d >= 0.01 {
			u.OutsideSeconds[k] = d
		}
	}
	if d := b.SoftIRQ - a.SoftIRQ; d >= 0.01 {
		u.OutsideSeconds["softirq"] = d
	}
	u.Host = (b.Host - a.Host) / secs
	u.Cluster = cluster / secs
	u.Self = (b.Self - a.Self) / secs
	u.Outside = max(0, u.Host-u.Cluster-u.Self)
	return u
}

// Components sums CPUSeconds over nodes by component: "kubelet",
// "containerd", "kube-apiserver", "etcd", ... and "pe" for PE pods.
func (u Usage) Components(component func(part string) string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range u.CPUSeconds {
		_, part, _ := strings.Cut(k, "/")
		out[component(part)] += v
	}
	return out
}

// Keys are m's keys, sorted.
func Keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func loadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return l, fmt.Errorf("/proc/loadavg: %q", b)
	}
	for i := range 3 {
		if l[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return l, err
		}
	}
	return l, nil
}

// hostBusy is user+nice+system+irq+softirq+steal of the "cpu" line, and
// softirq alone.
func hostBusy() (busy, softirq float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: %q", line)
	}
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, 0, err
		}
		busy += v
		if i == 7 {
			softirq = v
		}
	}
	return busy / ClockTick, softirq / ClockTick, nil
}

// readOthers records, by name, every process of the host outside the
// nodes' cgroups and other than this one (with its reaped children's CPU).
func (s *Snapshot) readOthers(nodes []Node) {
	inNode := map[string]bool{}
	for _, n := range nodes {
		if dir, err := cgroupDir(n.PID); err == nil {
			inNode[dir] = true
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir, err := cgroupDir(pid)
		if err != nil || underAny(dir, inNode) {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		if v, err := procCPU(pid, true); err == nil {
			s.Others[strings.TrimSpace(string(comm))] += v
		}
	}
}

func underAny(dir string, roots map[string]bool) bool {
	for r := range roots {
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}

// procCPU is a process's user+system time, with its reaped children's
// when children is set.
func procCPU(pid int, children bool) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime, cstime are 14-17.
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	n := 2
	if children {
		n = 4
	}
	var t float64
	for k := range n {
		v, err := strconv.ParseFloat(f[11+k], 64)
		if err != nil {
			return 0, err
		}
		t += v
	}
	return t / ClockTick, nil
}

// cgroupDir is the CPU accounting cgroup directory of a process.
func cgroupDir(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	var v2 string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpuacct" {
				return filepath.Join("/sys/fs/cgroup", parts[1], parts[2]), nil
			}
		}
	}
	if v2 != "" {
		return filepath.Join("/sys/fs/cgroup", v2), nil
	}
	return "", fmt.Errorf("no CPU accounting cgroup for pid %d", pid)
}

// cgroupCPU is a cgroup's CPU time, children included.
func cgroupCPU(dir string) (float64, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		ns, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		return ns / 1e9, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseFloat(v, 64)
			return us / 1e6, err
		}
	}
	return 0, fmt.Errorf("%s/cpu.stat: no usage_usec", dir)
}

// readPods records the cgroup of every pod under the node's kubelet slice.
func (s *Snapshot) readPods(node, dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // a pod's cgroup removed while walking
		}
		if !d.IsDir() || p == dir {
			return nil
		}
		base := d.Name()
		i := strings.LastIndex(base, "-pod")
		if i < 0 || !strings.HasSuffix(base, ".slice") {
			return nil
		}
		uid := strings.ReplaceAll(strings.TrimSuffix(base[i+4:], ".slice"), "_", "-")
		if v, err := cgroupCPU(p); err == nil {
			s.Parts[node+"/pod/"+uid] = v
		}
		return filepath.SkipDir
	})
}

// readProcesses records, by name, the processes in the node's own cgroup
// (not in a pod's): kubelet, containerd and its shims, systemd.
func (s *Snapshot) readProcesses(node, dir string) error {
	for _, f := range []string{"cgroup.procs", "tasks"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(line)
			if err != nil {
				continue
			}
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err != nil {
				continue
			}
			v, err := procCPU(pid, true)
			if err != nil {
				continue
			}
			s.Parts[node+"/"+strings.TrimSpace(string(comm))] += v
		}
		return nil
	}
	return fmt.Errorf("%s: no cgroup.procs", dir)
}
