package app

import (
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestSubscriberByNameOrProperties(t *testing.T) {
	gold := &v1alpha1.ExportSpec{StreamName: "prices", Properties: map[string]string{"feed": "prices", "tier": "gold"}}
	bronze := &v1alpha1.ExportSpec{StreamName: "quotes", Properties: map[string]string{"feed": "prices", "tier": "bronze"}}
	for _, c := range []struct {
		im         v1alpha1.ImportSpec
		gold, brnz bool
	}{
		{v1alpha1.ImportSpec{StreamName: "prices"}, true, false},
		{v1alpha1.ImportSpec{StreamName: "quotes", Subscription: "tier=gold"}, false, true}, // a name wins over a subscription
		{v1alpha1.ImportSpec{Subscription: "feed=prices"}, true, true},
		{v1alpha1.ImportSpec{Subscription: "feed=prices,tier notin (bronze)"}, true, false},
		{v1alpha1.ImportSpec{Subscription: "tier in (("}, false, false}, // does not parse: nothing
	} {
		s := NewSubscriber(&c.im)
		if got := s.Receives(gold); got != c.gold {
			t.Errorf("%+v receives gold: %v", c.im, got)
		}
		if got := s.Receives(bronze); got != c.brnz {
			t.Errorf("%+v receives bronze: %v", c.im, got)
		}
	}
}

func TestStoreConfigCarriesTheS3Settings(t *testing.T) {
	got := StoreConfig(&v1alpha1.CheckpointStore{Type: v1alpha1.StoreS3, Endpoint: "minio:9000", Bucket: "ckpt",
		Prefix: "p", Insecure: true, CreateBucket: true, CredentialsSecret: "creds"})
	if got.Type != "s3" || got.Endpoint != "minio:9000" || got.Bucket != "ckpt" || got.Prefix != "p" || !got.Insecure ||
		!got.CreateBucket || got.AccessKeyEnv == "" || got.SecretKeyEnv == "" {
		t.Fatalf("store config %+v", got)
	}
	if StoreConfig(nil) != nil {
		t.Fatal("no store gave a config")
	}
}
