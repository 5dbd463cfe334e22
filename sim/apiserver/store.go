package apiserver

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The store operations below work on the server's own copies: a stored
// object is never mutated after it is stored (a change stores a new copy), so
// pending watch events may share it and copy on delivery.

func (s *Server) key(ks *kindStore, namespace, name string) types.NamespacedName {
	if !ks.namespaced {
		namespace = ""
	}
	return types.NamespacedName{Namespace: namespace, Name: name}
}

func (s *Server) now() metav1.Time {
	// Timestamps are serialised with second precision; keep that.
	return metav1.NewTime(s.clk.Now().Truncate(time.Second))
}

func rvString(rv uint64) string { return strconv.FormatUint(rv, 10) }

func (s *Server) get(ks *kindStore, namespace, name string) (client.Object, error) {
	s.stats.Get++
	o, ok := ks.objs[s.key(ks, namespace, name)]
	if !ok {
		return nil, apierrors.NewNotFound(ks.gr, name)
	}
	return o, nil
}

func (s *Server) list(ks *kindStore, opts *client.ListOptions) ([]client.Object, error) {
	s.stats.List++
	var out []client.Object
	for k, o := range ks.objs {
		if opts.Namespace != "" && ks.namespaced && k.Namespace != opts.Namespace {
			continue
		}
		if opts.LabelSelector != nil && !opts.LabelSelector.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		if opts.FieldSelector != nil && !opts.FieldSelector.Empty() {
			ok, err := MatchFields(o, opts.FieldSelector)
			if err != nil {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			if !ok {
				continue
			}
		}
		out = append(out, o)
	}
	// etcd returns keys in order: namespace, then name.
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}

// MatchFields evaluates a field selector against an object by reading the
// selected fields from its JSON form (metadata.name, spec.nodeName, ...).
// The real API server supports only a few fields per kind; this is lenient.
func MatchFields(obj client.Object, sel fields.Selector) (bool, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return false, err
	}
	set := fields.Set{}
	for _, r := range sel.Requirements() {
		v, _ := lookupField(u, r.Field)
		set[r.Field] = v
	}
	return sel.Matches(set), nil
}

func lookupField(u map[string]any, path string) (string, bool) {
	var cur any = u
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' {
			m, ok := cur.(map[string]any)
			if !ok {
				return "", false
			}
			cur, ok = m[path[start:i]]
			if !ok {
				return "", false
			}
			start = i + 1
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case nil:
		return "", false
	default:
		return fmt.Sprint(v), true
	}
}

func (s *Server) invalid(ks *kindStore, name, msg string) error {
	return apierrors.NewInvalid(ks.gvk.GroupKind(), name, field.ErrorList{field.Invalid(field.NewPath("metadata"), name, msg)})
}

func (s *Server) create(ks *kindStore, in client.Object, visibleAt time.Duration) (client.Object, error) {
	s.stats.Create++
	obj := in.DeepCopyObject().(client.Object)
	if ks.namespaced && obj.GetNamespace() == "" {
		return nil, s.invalid(ks, obj.GetName(), "namespace is required for a namespaced kind")
	}
	if !ks.namespaced {
		obj.SetNamespace("")
	}
	if obj.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	if obj.GetName() == "" {
		if obj.GetGenerateName() == "" {
			return nil, s.invalid(ks, "", "name or generateName is required")
		}
		// The real server retries a colliding generated name a few times.
		for i := 0; i < 8; i++ {
			obj.SetName(obj.GetGenerateName() + s.randSuffix())
			if _, taken := ks.objs[s.key(ks, obj.GetNamespace(), obj.GetName())]; !taken {
				break
			}
		}
	}
	k := s.key(ks, obj.GetNamespace(), obj.GetName())
	if _, exists := ks.objs[k]; exists {
		return nil, apierrors.NewAlreadyExists(ks.gr, obj.GetName())
	}
	obj.GetObjectKind().SetGroupVersionKind(emptyGVK)
	obj.SetUID(s.newUID())
	obj.SetCreationTimestamp(s.now())
	obj.SetDeletionTimestamp(nil)
	obj.SetDeletionGracePeriodSeconds(nil)
	obj.SetManagedFields(nil)
	if ks.generation {
		obj.SetGeneration(1)
	} else {
		obj.SetGeneration(0)
	}
	prepareForCreate(ks, obj)
	if pod, ok := obj.(*corev1.Pod); ok && pod.Spec.TerminationGracePeriodSeconds == nil {
		g := int64(s.p.DefaultPodGracePeriod / time.Second)
		pod.Spec.TerminationGracePeriodSeconds = &g
	}
	s.rev++
	obj.SetResourceVersion(rvString(s.rev))
	ks.objs[k] = obj
	s.commit(ks, Added, obj, visibleAt)
	return obj, nil
}

// checkRV returns a Conflict if in carries a resourceVersion other than
// the stored one (an empty one means an unconditional write).
func (s *Server) checkRV(ks *kindStore, old, in client.Object) error {
	if rv := in.GetResourceVersion(); rv != "" && rv != old.GetResourceVersion() {
		s.stats.Conflicts++
		return apierrors.NewConflict(ks.gr, in.GetName(), fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	return nil
}

// update writes in over the stored object. status says which endpoint:
// the main resource (status ignored) or the status subresource (only status
// taken).
func (s *Server) update(ks *kindStore, in client.Object, status bool, visibleAt time.Duration) (client.Object, error) {
	if status {
		s.stats.Status++
	} else {
		s.stats.Update++
	}
	k := s.key(ks, in.GetNamespace(), in.GetName())
	old, ok := ks.objs[k]
	if !ok {
		return nil, apierrors.NewNotFound(ks.gr, in.GetName())
	}
	if err := s.checkRV(ks, old, in); err != nil {
		return nil, err
	}
	if uid := in.GetUID(); uid != "" && uid != old.GetUID() {
		return nil, apierrors.NewConflict(ks.gr, in.GetName(), fmt.Errorf("uid precondition failed: %s != %s", uid, old.GetUID()))
	}
	var obj client.Object
	if status {
		if ks.statusIdx == nil {
			return nil, apierrors.NewNotFound(ks.gr, in.GetName()+"/status")
		}
		// Only status changes, so comparing statuses is comparing objects;
		// a write that changes nothing costs no copy.
		if equality.Semantic.DeepEqual(ks.status(in), ks.status(old)) {
			return old, nil
		}
		obj = old.DeepCopyObject().(client.Object)
		ks.copyStatusDeep(obj, in)
	} else {
		obj = in.DeepCopyObject().(client.Object)
		obj.GetObjectKind().SetGroupVersionKind(emptyGVK)
		// Immutable or server-owned metadata.
		obj.SetNamespace(old.GetNamespace())
		obj.SetUID(old.GetUID())
		obj.SetCreationTimestamp(old.GetCreationTimestamp())
		obj.SetDeletionTimestamp(old.GetDeletionTimestamp())
		obj.SetDeletionGracePeriodSeconds(old.GetDeletionGracePeriodSeconds())
		obj.SetGeneration(old.GetGeneration())
		obj.SetGenerateName(old.GetGenerateName())
		obj.SetManagedFields(nil)
		if ks.statusIdx != nil {
			ks.copyStatus(obj, old)
		}
		if old.GetDeletionTimestamp() != nil {
			for _, f := range obj.GetFinalizers() {
				if !slices.Contains(old.GetFinalizers(), f) {
					return nil, apierrors.NewForbidden(ks.gr, in.GetName(), fmt.Errorf("no new finalizers can be added if the object is being deleted, found new finalizers %q", f))
				}
			}
		}
		if ks.generation && !ks.specEqual(old, obj) {
			obj.SetGeneration(old.GetGeneration() + 1)
		}
	}
	if pod, ok := obj.(*corev1.Pod); ok && !status && pod.Spec.NodeName != old.(*corev1.Pod).Spec.NodeName {
		return nil, s.invalid(ks, in.GetName(), "spec.nodeName is immutable; bind through the binding subresource")
	}
	// A write that changes nothing is not a write: etcd is not touched, the
	// resourceVersion stays and no watch event is sent (GuaranteedUpdate
	// short-circuits on identical bytes). Without this, reconcilers that
	// write unconditionally would loop forever on their own events.
	obj.SetResourceVersion(old.GetResourceVersion())
	if !status && equality.Semantic.DeepEqual(obj, old) { // (status writes were compared above)
		return old, nil
	}
	s.rev++
	obj.SetResourceVersion(rvString(s.rev))
	if shouldDeleteDuringUpdate(obj) {
		delete(ks.objs, k)
		s.commit(ks, Deleted, obj, visibleAt)
		return obj, nil
	}
	ks.objs[k] = obj
	s.commit(ks, Modified, obj, visibleAt)
	return obj, nil
}

func shouldDeleteDuringUpdate(obj client.Object) bool {
	g := obj.GetDeletionGracePeriodSeconds()
	return obj.GetDeletionTimestamp() != nil && len(obj.GetFinalizers()) == 0 && (g == nil || *g == 0)
}

// bind sets a pending pod's node, as the pods/binding subresource does.
func (s *Server) bind(ks *kindStore, namespace, name string, b *corev1.Binding, visibleAt time.Duration) (client.Object, error) {
	s.stats.Create++
	k := s.key(ks, namespace, name)
	old, ok := ks.objs[k]
	if !ok {
		return nil, apierrors.NewNotFound(ks.gr, name)
	}
	pod := old.DeepCopyObject().(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		return nil, apierrors.NewConflict(ks.gr, name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
	}
	if pod.Spec.NodeName != "" {
		return nil, apierrors.NewConflict(ks.gr, name, fmt.Errorf("pod %s is already assigned to node %q", name, pod.Spec.NodeName))
	}
	if b.Target.Name == "" {
		return nil, s.invalid(ks, name, "binding target name is required")
	}
	if uid := b.UID; uid != "" && uid != pod.UID {
		return nil, apierrors.NewConflict(ks.gr, name, fmt.Errorf("uid precondition failed"))
	}
	pod.Spec.NodeName = b.Target.Name
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: s.now(),
	})
	s.rev++
	pod.SetResourceVersion(rvString(s.rev))
	ks.objs[k] = pod
	s.commit(ks, Modified, pod, visibleAt)
	return pod, nil
}

func (s *Server) delete(ks *kindStore, namespace, name string, opts *client.DeleteOptions, visibleAt time.Duration) (client.Object, error) {
	s.stats.Delete++
	k := s.key(ks, namespace, name)
	old, ok := ks.objs[k]
	if !ok {
		return nil, apierrors.NewNotFound(ks.gr, name)
	}
	if pc := opts.Preconditions; pc != nil {
		if pc.UID != nil && *pc.UID != old.GetUID() {
			return nil, apierrors.NewConflict(ks.gr, name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *pc.UID, old.GetUID()))
		}
		if pc.ResourceVersion != nil && *pc.ResourceVersion != old.GetResourceVersion() {
			s.stats.Conflicts++
			return nil, apierrors.NewConflict(ks.gr, name, fmt.Errorf("precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *pc.ResourceVersion, old.GetResourceVersion()))
		}
	}
	obj := old.DeepCopyObject().(client.Object)
	changed := false

	// Propagation finalizers, as deletionFinalizersForGarbageCollection.
	if opts.PropagationPolicy != nil {
		fins := obj.GetFinalizers()
		want := ""
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationForeground:
			want = FinalizerForeground
		case metav1.DeletePropagationOrphan:
			want = FinalizerOrphan
		}
		var nf []string
		for _, f := range fins {
			if (f == FinalizerForeground || f == FinalizerOrphan) && f != want {
				continue
			}
			nf = append(nf, f)
		}
		// As the real server, an explicit policy rewrites these two
		// finalizers even on an object already being deleted.
		if want != "" && !slices.Contains(nf, want) {
			nf = append(nf, want)
		}
		if !slices.Equal(nf, fins) {
			obj.SetFinalizers(nf)
			changed = true
		}
	}

	now := s.clk.Now()
	// Graceful deletion of a pod that runs on a node.
	if pod, ok := obj.(*corev1.Pod); ok && podGraceful(pod) {
		grace := int64(s.p.DefaultPodGracePeriod / time.Second)
		if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		if opts.GracePeriodSeconds != nil {
			grace = *opts.GracePeriodSeconds
		}
		if grace > 0 {
			deadline := now.Add(time.Duration(grace) * time.Second)
			cur := pod.DeletionTimestamp
			if cur == nil || deadline.Before(cur.Time) {
				t := metav1.NewTime(deadline.Truncate(time.Second))
				pod.DeletionTimestamp = &t
				pod.DeletionGracePeriodSeconds = &grace
				changed = true
			}
			if !changed {
				return obj, nil
			}
			s.rev++
			obj.SetResourceVersion(rvString(s.rev))
			ks.objs[k] = obj
			s.commit(ks, Modified, obj, visibleAt)
			return obj, nil
		}
	}

	if len(obj.GetFinalizers()) > 0 {
		if obj.GetDeletionTimestamp() == nil {
			if obj.GetGeneration() > 0 {
				obj.SetGeneration(obj.GetGeneration() + 1)
			}
			t := metav1.NewTime(now.Truncate(time.Second))
			obj.SetDeletionTimestamp(&t)
			changed = true
		}
		if g := obj.GetDeletionGracePeriodSeconds(); g == nil || *g != 0 {
			var zero int64
			obj.SetDeletionGracePeriodSeconds(&zero)
			changed = true
		}
		if !changed {
			return obj, nil
		}
		s.rev++
		obj.SetResourceVersion(rvString(s.rev))
		ks.objs[k] = obj
		s.commit(ks, Modified, obj, visibleAt)
		return obj, nil
	}

	s.rev++
	obj.SetResourceVersion(rvString(s.rev))
	delete(ks.objs, k)
	s.commit(ks, Deleted, obj, visibleAt)
	return obj, nil
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// prepareForCreate does what the kinds' create strategies do with status:
// status set by the creator is dropped for kinds with a status subresource
// (CRDs, Services, PVCs), except Nodes, which may be created with status;
// a Pod starts Pending with its QoS class; a Namespace starts Active.
func prepareForCreate(ks *kindStore, obj client.Object) {
	switch o := obj.(type) {
	case *corev1.Node:
		return
	case *corev1.Pod:
		o.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOS(o)}
		return
	case *corev1.Namespace:
		o.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
		return
	}
	if ks.statusIdx != nil {
		v := reflect.ValueOf(obj).Elem().FieldByIndex(ks.statusIdx)
		v.Set(reflect.Zero(v.Type()))
	}
}

// podQOS is the pod's QoS class (v1 qos.GetPodQOS, for cpu and memory).
func podQOS(pod *corev1.Pod) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if (hasReq && !req.IsZero()) || (hasLim && !lim.IsZero()) {
				any = true
			}
			if !hasLim || lim.IsZero() || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}
