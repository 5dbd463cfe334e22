package integration

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

func TestApplicationIsImmutable(t *testing.T) {
	ns := namespace(t)
	j := wiringtest.PipelineJob(ns, "fixed", 3)
	j.UID, j.Generation = "", 0
	ctx := context.Background()
	if err := k8s.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	j.Spec.Application.Operators[1].Kind = v1alpha1.KindFilter
	if err := k8s.Update(ctx, j); !apierrors.IsInvalid(err) {
		t.Fatalf("changing the application: %v, want Invalid", err)
	}
	got := getJob(t, ns, "fixed")
	got.Spec.Retry = 2
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatalf("raising retry must be allowed: %v", err)
	}
}
