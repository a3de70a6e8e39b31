package egg

import (
	"reflect"
	"testing"
)

func TestSortOrdersVersionsAsTheSeedPromises(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		// Scrapyd's own test vectors (tests/test_eggstorage.py), with the
		// answers the seed document promises rather than Scrapyd's
		// string-sort fallback: r10 after r9, 2.11 after 2.9.
		{[]string{"zzz", "b", "ddd", "a", "x"}, []string{"a", "b", "ddd", "x", "zzz"}},
		{[]string{"10", "1", "9"}, []string{"1", "9", "10"}},
		{[]string{"r10", "r1", "r9"}, []string{"r1", "r9", "r10"}},
		{[]string{"2.11", "2.01", "2.9"}, []string{"2.01", "2.9", "2.11"}},
		{[]string{"9", "2", "200", "3", "4"}, []string{"2", "3", "4", "9", "200"}},
		// Timestamps (scrapyd-deploy's default) by value, even of different lengths.
		{[]string{"1700000000", "999999999", "1700000001"}, []string{"999999999", "1700000000", "1700000001"}},
		// Mixed schemes never fail: numbers before words, then a total order.
		{[]string{"b3b8fd2", "123456789"}, []string{"123456789", "b3b8fd2"}},
		{[]string{"1.0", "1.0.1", "1.0-rc1", "0.9"}, []string{"0.9", "1.0", "1.0.1", "1.0-rc1"}},
		{[]string{"v1.10", "v1.9", "v1.2"}, []string{"v1.2", "v1.9", "v1.10"}},
		{[]string{"r10-main", "r9-main", "r9-dev"}, []string{"r9-dev", "r9-main", "r10-main"}},
	} {
		got := append([]string(nil), tc.in...)
		Sort(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Sort(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCompareIsATotalOrder(t *testing.T) {
	vs := []string{"", "0", "00", "1", "1.0", "1_0", "a", "A", "r1", "1a", "a1", "1.a", "-", "é", "10", "01"}
	for _, a := range vs {
		if Compare(a, a) != 0 {
			t.Errorf("Compare(%q, %q) != 0", a, a)
		}
		for _, b := range vs {
			if a != b && Compare(a, b) == 0 {
				t.Errorf("Compare(%q, %q) == 0 for different strings", a, b)
			}
			if Compare(a, b) != -Compare(b, a) {
				t.Errorf("Compare(%q, %q) is not antisymmetric", a, b)
			}
			for _, c := range vs {
				if Compare(a, b) < 0 && Compare(b, c) < 0 && Compare(a, c) >= 0 {
					t.Errorf("not transitive: %q < %q < %q but not %q < %q", a, b, c, a, c)
				}
			}
		}
	}
}

func TestSanitizeMatchesScrapydFileStems(t *testing.T) {
	for in, want := range map[string]string{"1.0": "1_0", "r10": "r10", "v1.2-rc_3": "v1_2-rc_3", "a b/c": "a_b_c", "é": "_"} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCompare(f *testing.F) {
	for _, s := range []string{"1.0", "r10", "2.11", "b3b8fd2", "1700000000", ""} {
		f.Add(s, "r9")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if Compare(a, b) != -Compare(b, a) {
			t.Fatalf("Compare(%q, %q) is not antisymmetric", a, b)
		}
		if (Compare(a, b) == 0) != (a == b) {
			t.Fatalf("Compare(%q, %q) = 0 only for equal strings", a, b)
		}
	})
}
