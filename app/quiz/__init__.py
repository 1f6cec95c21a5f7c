"""The quiz: quizzes and their live sessions (rooms), answers and scoring, and each session's board in
Redis."""
