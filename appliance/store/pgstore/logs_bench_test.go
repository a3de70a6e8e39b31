package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// scrapyLog is n bytes of lines as a busy crawl logs them.
func scrapyLog(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "2026-11-29 09:%02d:%02d [scrapy.core.engine] DEBUG: Crawled (200) <GET https://books.example/catalogue/page-%d.html> (referer: https://books.example/catalogue/page-%d.html)\n",
			i/60%60, i%60, i, i-1)
		if i%7 == 0 {
			fmt.Fprintf(&b, "2026-11-29 09:%02d:%02d [scrapy.core.scraper] DEBUG: Scraped from <200 https://books.example/catalogue/page-%d.html>\n{'title': 'Book %d', 'price': '£%d.%02d'}\n", i/60%60, i%60, i, i, i%90, i%100)
		}
	}
	return []byte(b.String()[:n])
}

// BenchmarkShipLog: one node ships a crawl's log in 64 KiB chunks (a busy
// crawl's second), each compressed and stored in its own transaction; the
// MB/s is plain log bytes shipped per second. The stored/plain ratio is
// the database's cost per log byte.
func BenchmarkShipLog(b *testing.B) {
	url := pgtest.DB(b)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, url, pgstore.Options{Node: "n", ServerClock: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	j := running(b, s, "a")
	const chunk = 64 << 10
	data := scrapyLog(chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	var off int64
	for range b.N {
		size, err := s.ShipLog(ctx, j.Seq, off, data, false, false)
		if err != nil || size != off+chunk {
			b.Fatal(size, err)
		}
		off = size
	}
	b.StopTimer()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored int64
	if err := conn.QueryRow(ctx, `SELECT sum(length(data)) FROM job_log_chunks`).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(stored)/float64(off), "stored/plain")
}

// BenchmarkReadShippedLog: another node reads a shipped log back in 1 MiB
// windows (the reader's), each decompressed from the chunks it overlaps;
// MB/s is plain bytes served per second.
func BenchmarkReadShippedLog(b *testing.B) {
	s := nodes(b, 1)[0]
	ctx := context.Background()
	j := running(b, s, "a")
	const chunk, total = 64 << 10, 16 << 20
	data := scrapyLog(chunk)
	for off := int64(0); off < total; off += chunk {
		if _, err := s.ShipLog(ctx, j.Seq, off, data, false, false); err != nil {
			b.Fatal(err)
		}
	}
	const window = 1 << 20
	b.SetBytes(window)
	b.ResetTimer()
	for i := range b.N {
		off := int64(i%(total/window)) * window
		got, err := s.ReadShippedLog(ctx, j.Seq, off, window)
		if err != nil || len(got) != window {
			b.Fatal(len(got), err)
		}
	}
}
