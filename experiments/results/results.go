// Package results is the one schema of experiment outputs: long-format rows
// (one measured value per row) written as CSV, and a JSON file of the run's
// metadata. Rows hold nothing that varies between two runs of the same
// definition and seed (no timestamps, no commit), so such runs give
// byte-identical CSV; what does vary lives in the metadata.
package results

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// Row is one measured value.
type Row struct {
	Experiment string
	Backend    string
	Cluster    string
	// Params are the trial's parameters as key=value pairs joined by ";".
	Params     string
	Repetition int
	Seed       int64
	Metric     string
	// Subject is what the value is about when a trial yields one value per
	// object (a pod name for per-pod phases); empty for trial-wide values.
	Subject string
	Value   float64
	Unit    string
	// Flags mark a measured row whose conditions make it untrustworthy
	// (FlagForced, FlagNoisy), joined by ";"; empty for a clean row.
	Flags string
}

// Flags of a row.
const (
	// FlagForced: the run was started on a busy host by request.
	FlagForced = "forced"
	// FlagNoisy: CPU use outside the cluster rose during the trial.
	FlagNoisy = "noisy"
)

// Trusted reports whether a row carries no flag.
func (r Row) Trusted() bool { return r.Flags == "" }

// Header is the CSV header, in column order.
var Header = []string{"experiment", "backend", "cluster", "params", "repetition", "seed", "metric", "subject", "value", "unit", "flags"}

// legacyColumns is the header before the flags column: such files read
// with no flags.
const legacyColumns = 10

func (r Row) record() []string {
	return []string{r.Experiment, r.Backend, r.Cluster, r.Params, strconv.Itoa(r.Repetition),
		strconv.FormatInt(r.Seed, 10), r.Metric, r.Subject, FormatValue(r.Value), r.Unit, r.Flags}
}

// FormatValue is the shortest decimal text that reads back to v exactly.
func FormatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// WriteCSV writes the header and rows in the given order.
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Header); err != nil {
		return err
	}
	for i, r := range rows {
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
			return fmt.Errorf("row %d (%s %s): value %v is not finite", i, r.Metric, r.Params, r.Value)
		}
		if err := cw.Write(r.record()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads rows written by WriteCSV, checking the header.
func ReadCSV(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if len(head) != len(Header) && len(head) != legacyColumns {
		return nil, fmt.Errorf("header has %d columns, want %d", len(head), len(Header))
	}
	for i, h := range head {
		if Header[i] != h {
			return nil, fmt.Errorf("column %d is %q, want %q", i+1, h, Header[i])
		}
	}
	cr.FieldsPerRecord = len(head)
	var rows []Row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		rep, err := strconv.Atoi(rec[4])
		if err != nil {
			return nil, fmt.Errorf("line %d: repetition: %w", line, err)
		}
		seed, err := strconv.ParseInt(rec[5], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: seed: %w", line, err)
		}
		v, err := strconv.ParseFloat(rec[8], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", line, err)
		}
		row := Row{Experiment: rec[0], Backend: rec[1], Cluster: rec[2], Params: rec[3],
			Repetition: rep, Seed: seed, Metric: rec[6], Subject: rec[7], Value: v, Unit: rec[9]}
		if len(rec) > legacyColumns {
			row.Flags = rec[10]
		}
		rows = append(rows, row)
	}
}

// Paths of one run's files: results/<experiment>/<backend>.csv and .json.
func Paths(dir, experiment, backend string) (csvPath, jsonPath string) {
	base := filepath.Join(dir, experiment, backend)
	return base + ".csv", base + ".json"
}

// WriteFile writes rows to path atomically (a reader never sees half a file).
func WriteFile(path string, rows []Row) error {
	return writeAtomic(path, func(w io.Writer) error { return WriteCSV(w, rows) })
}

// ReadFile reads the rows of one CSV file.
func ReadFile(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := ReadCSV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// ReadExperiment reads every backend's rows of one experiment under dir.
func ReadExperiment(dir, experiment string) ([]Row, error) {
	files, err := filepath.Glob(filepath.Join(dir, experiment, "*.csv"))
	if err != nil {
		return nil, err
	}
	var all []Row
	for _, f := range files {
		rows, err := ReadFile(f)
		if err != nil {
			return nil, err
		}
		all = append(all, rows...)
	}
	return all, nil
}

func writeAtomic(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
