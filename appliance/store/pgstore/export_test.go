package pgstore

// Crash closes the store as a killed daemon's connections are closed: the
// node is not marked stopped.
func (s *Store) Crash() {
	s.nodeMu.Lock()
	s.dropNodeConn()
	s.nodeMu.Unlock()
	s.pool.Close()
}

// LastSuccessesQuery is LastSuccesses' statement, for its plan.
const LastSuccessesQuery = lastSuccesses
